#!/usr/bin/env bash
# Fails when the generated code in sdk/src/corral/v1 does not match proto/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$root/tools/genproto.sh" "$tmp"
if ! diff -r -x '__init__.py' -x 'py.typed' -x '__pycache__' \
    "$tmp/corral/v1" "$root/sdk/src/corral/v1"; then
  echo "generated code is out of date: run 'make generate' and commit the result" >&2
  exit 1
fi
echo "generated code matches proto/"
