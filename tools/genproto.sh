#!/usr/bin/env bash
# Generates the Python code for proto/ into OUT (default sdk/src). Generated
# files are never edited by hand; `make check-generated` proves they match.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/sdk/src}
py=${PYTHON:-$root/.venv/bin/python}
bin=$(dirname "$py")
cd "$root"
rm -f "$out"/corral/v1/*_pb2*.py "$out"/corral/v1/*_pb2*.pyi
mkdir -p "$out/corral/v1"
"$py" -m grpc_tools.protoc -Iproto \
  --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out="$out" \
  --plugin=protoc-gen-mypy="$bin/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$bin/protoc-gen-mypy_grpc" \
  proto/corral/v1/*.proto 2>&1 | { grep -v "^Writing mypy" || true; } >&2
