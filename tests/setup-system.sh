#!/usr/bin/env bash
# System packages the tests need that PyPI cannot give: FUSE (fscas mount: libfuse 3 for mfusepy, the
# fusermount3 tool) and Node.js with npm (Azurite). Installs what is missing with apt-get, as root or
# through sudo; does nothing when everything is there. Idempotent, a second or two when complete.
set -euo pipefail

missing=()
if ! ldconfig -p 2>/dev/null | grep 'libfuse3\.so\.3' >/dev/null || ! command -v fusermount3 >/dev/null 2>&1; then
    missing+=(fuse3)
fi
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "tests/setup-system.sh: missing ${missing[*]}; install them (Debian: apt-get install ${missing[*]})" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "tests/setup-system.sh: missing ${missing[*]}, and no apt-get here: install them with your package manager" >&2
    exit 1
fi
echo "tests/setup-system.sh: installing ${missing[*]}" >&2
"${as_root[@]}" apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
