#!/usr/bin/env bash
# The whole test suite, as CI runs it: set up, build release and asan (ASan+UBSan), run unit
# tests, integration tests (the real turbine process over HTTP and the bus) and fuzz targets in
# both builds, after checking that every source is formatted as .clang-format says.  Ends with one line: "N passed, N failed, N skipped" (docs/testing.md says what
# each count means).  Under CI=true a skip for a missing dependency is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/setup.sh
# One formatting style, enforced: a file that differs from .clang-format fails the run here,
# before anything is built (tools/format.sh rewrites them).
./tools/format.sh --check
jobs=$(nproc 2>/dev/null || echo 2)
scons -Q -j"$jobs"
scons -Q -j"$jobs" --mode=asan
# Sanitizer reports get exit statuses of their own (86 ASan/LSan, 87 UBSan), never the 1 or 2
# of a refusal; a later option wins, so these override a caller's.  tests/run.py applies the same
# (tests/integration/exitcheck.py) when run directly.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1:exitcode=86:abort_on_error=0"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1:exitcode=87:halt_on_error=1"
exec .venv/bin/python tests/run.py --build build/release --build build/asan "$@"
