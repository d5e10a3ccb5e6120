#!/usr/bin/env bash
# System packages the tests need that PyPI cannot give: FUSE (fscas mount: libfuse 2 for fusepy, the
# fusermount tools) and Node.js with npm (Azurite). Installs what is missing with apt-get, as root or
# through sudo; does nothing when everything is there. Idempotent, a second or two when complete.
set -euo pipefail

missing=()
[ -e /usr/lib/x86_64-linux-gnu/libfuse.so.2 ] || ldconfig -p 2>/dev/null | grep -q 'libfuse\.so\.2' || missing+=(libfuse2)
command -v fusermount >/dev/null 2>&1 || command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
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
