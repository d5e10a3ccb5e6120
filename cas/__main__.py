"""`python -m fscas` runs the CLI."""

import sys

from fscas.cli import main

sys.exit(main())
