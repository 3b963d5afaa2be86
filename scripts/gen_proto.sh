#!/bin/sh
# Regenerate agent/export/export_pb2.py and its type stub from export.proto.
# Run from anywhere; needs grpcio-tools in the project venv.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-"$root/.venv/bin/python"}
cd "$root"
"$python" -m grpc_tools.protoc -I. --python_out=. --pyi_out=. agent/export/export.proto
echo "generated agent/export/export_pb2.py and export_pb2.pyi"
