#!/usr/bin/env bash
# One formatting style for every C, C++ and CUDA source of the project: clang-format 14 (Debian
# 12's `clang-format` package) with the root's .clang-format.
#   tools/format.sh           rewrites the files that differ, in place
#   tools/format.sh --check   changes nothing; names each file that differs and exits 1 if any
# Not formatted: the fuzz corpora (data) and tests/plugins/sdk-v1/ (frozen copies of an old SDK
# that must stay byte for byte as they were).  tools/test.sh runs --check first, so CI fails on
# a diff.
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: tools/format.sh [--check]" >&2; exit 2 ;;
esac
cf=""
for c in clang-format-14 clang-format; do
  if command -v "$c" >/dev/null 2>&1 && "$c" --version | grep -q 'version 14\.'; then
    cf=$c
    break
  fi
done
if [ -z "$cf" ]; then
  echo "format: clang-format 14 not found (tools/setup.sh installs it; other versions format differently)" >&2
  exit 2
fi
mapfile -t files < <(git ls-files '*.c' '*.h' '*.cpp' '*.cu' '*.cuh' |
                     grep -v -e '^tests/fuzz/corpus/' -e '^tests/plugins/sdk-v1/')
if [ "${#files[@]}" -eq 0 ]; then
  echo "format: no sources found (git ls-files listed none: run from a git checkout)" >&2
  exit 2
fi
bad=0
for f in "${files[@]}"; do
  [ -f "$f" ] || continue
  if ! "$cf" --style=file "$f" | cmp -s - "$f"; then
    if [ "$check" = 1 ]; then
      echo "format: $f differs from .clang-format (run tools/format.sh)"
      bad=$((bad + 1))
    else
      "$cf" --style=file -i "$f"
      echo "format: rewrote $f"
    fi
  fi
done
if [ "$check" = 1 ]; then
  if [ "$bad" -gt 0 ]; then
    echo "format: $bad of ${#files[@]} files differ"
    exit 1
  fi
  echo "format: ${#files[@]} files ok"
fi
