#!/usr/bin/env bash
# Create (idempotently) the Python venv used by the nameko interop tests.
#
#   scripts/nameko-venv.sh            -> prints the venv's python as last stdout line
#   WARREN_VENV=/some/dir scripts/nameko-venv.sh
#
# Pins live in tests/interop/requirements.txt.  A marker file inside the venv
# records the sha256 of that file (plus the interpreter version); when it
# matches, the script does nothing and exits immediately.
# All progress/pip output goes to stderr so callers can do:
#   PY=$(scripts/nameko-venv.sh | tail -n1)
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$script_dir/.." && pwd)"
venv="${WARREN_VENV:-$repo/.venv/nameko}"
req="$repo/tests/interop/requirements.txt"
marker="$venv/.warren-pins.sha256"
py="$venv/bin/python"
base_python="${PYTHON:-python3}"

if [[ ! -f "$req" ]]; then
    echo "nameko-venv: missing $req" >&2
    exit 1
fi

pins_hash() {
    # hash of the pin list + the base interpreter's path (a different python
    # means a different venv)
    { cat "$req"; echo "python=$(command -v "$base_python")"; } | sha256sum | cut -d' ' -f1
}

want="$(pins_hash)"

# Fast path: nothing to do.
if [[ -x "$py" && -f "$marker" && "$(cat "$marker")" == "$want" ]]; then
    echo "$py"
    exit 0
fi

mkdir -p "$(dirname "$venv")"

# Serialise concurrent runs (e.g. parallel test binaries) on the same venv.
lock="$(dirname "$venv")/.$(basename "$venv").lock"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$lock"
    flock 9
    # another run may have finished the job while we waited
    if [[ -x "$py" && -f "$marker" && "$(cat "$marker")" == "$want" ]]; then
        echo "$py"
        exit 0
    fi
fi

if [[ ! -x "$py" ]]; then
    echo "nameko-venv: creating venv at $venv" >&2
    "$base_python" -m venv "$venv" >&2
fi

echo "nameko-venv: installing pins from $req" >&2
rm -f "$marker"
"$py" -m pip install --disable-pip-version-check --no-input -q -r "$req" >&2

# Smoke test the install before marking it good.
"$py" - >&2 <<'EOF'
import warnings
warnings.simplefilter("ignore")
import eventlet
eventlet.monkey_patch()
import nameko.rpc, nameko.events, nameko.runners, nameko.standalone.rpc  # noqa
import nameko.web.server, nameko.web.websocket  # noqa  (werkzeug compat)
from importlib.metadata import version
assert version("nameko") == "2.14.1", version("nameko")
EOF

echo "$want" > "$marker"
echo "$py"
