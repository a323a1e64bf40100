#!/usr/bin/env bash
# Regenerate rmm_proto/ from proto/. Needs the pinned grpcio-tools from the `dev` extra.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.}"
python -m grpc_tools.protoc -I proto \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  proto/rmm_proto/*.proto
