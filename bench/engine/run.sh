#!/bin/sh
# The engine benchmark in one run: builds (release), installs the bench-only Python packages
# into .venv when missing, then runs bench/engine/run.py with the given options
# (run.sh --help lists them; run.sh --quick is the short run).  See bench/README.md.
set -e
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
py=.venv/bin/python
if [ ! -x "$py" ]; then
    echo "run.sh: $root/.venv is absent: create it first (tools/setup.sh)" >&2
    exit 2
fi
if ! "$py" -c 'import httpx, gguf' 2>/dev/null; then
    "$py" -m pip install -q -r bench/requirements.txt -r tools/requirements.txt
fi
if [ -z "${TB_BUILD:-}" ]; then
    scons -Q -j2 build/release >/dev/null
fi
exec "$py" bench/engine/run.py "$@"
