#!/usr/bin/env bash
# Ember's main job on a fresh machine: build, start a server, scale a function
# from zero and back, and run the OCR example.
set -euo pipefail
cd "$(dirname "$0")"
echo "building bin/ember and bin/sim..."
go build -o bin/ ./cmd/ember ./examples/sim
exec bin/ember demo --sim bin/sim "$@"
