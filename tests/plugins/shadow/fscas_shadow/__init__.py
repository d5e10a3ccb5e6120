"""A plugin broken on purpose: importing it fails."""

raise RuntimeError("shadow plugin: import failed")
