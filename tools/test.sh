#!/usr/bin/env bash
# The whole test suite, as CI runs it: set up, build release and asan (ASan+UBSan), run unit
# tests, integration tests (the real turbine process over HTTP and the bus) and fuzz targets in
# both builds.  Ends with one line: "N passed, N failed, N skipped".
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
jobs=$(nproc 2>/dev/null || echo 2)
scons -Q -j"$jobs"
scons -Q -j"$jobs" --mode=asan
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
exec .venv/bin/python tests/run.py --build build/release --build build/asan "$@"
