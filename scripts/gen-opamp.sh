#!/usr/bin/env bash
# Regenerate schemas/opamp/v1/*_pb2.py(i) from the vendored OpAMP protos (schemas/opamp/proto/).
#
# grpcio-tools lives in its own throwaway venv (.venv-codegen): it is a code generator, not a runtime
# dependency, and it wants a newer setuptools than the project's venv needs. The pin comes from the
# `codegen` extra in pyproject.toml, so the generated code and the `protobuf` bound move together.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
VENV=.venv-codegen
PIN=$($PYTHON -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["optional-dependencies"]["codegen"][0])')
test -x "$VENV/bin/python" || $PYTHON -m venv "$VENV"
"$VENV/bin/pip" install -q "$PIN"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
"$VENV/bin/python" -m grpc_tools.protoc -Ischemas/opamp/proto \
  --python_out="$OUT" --pyi_out="$OUT" schemas/opamp/proto/opamp/v1/opamp.proto \
  schemas/opamp/proto/opamp/v1/anyvalue.proto
# protoc writes imports relative to the proto root (`from opamp.v1 import ...`); the modules live in the
# package schemas.opamp.v1. The descriptor names stay `opamp/v1/*.proto`, as upstream.
for f in "$OUT"/opamp/v1/*; do
  sed -e 's/^from opamp\.v1 import /from schemas.opamp.v1 import /' "$f" > "schemas/opamp/v1/$(basename "$f")"
done
echo "regenerated: $(ls schemas/opamp/v1/*_pb2.py*)"
