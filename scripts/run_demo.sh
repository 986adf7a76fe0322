#!/usr/bin/env bash
# Quick start, first command: set up, build, install, then the short demonstration.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
exec python3 scripts/demo.py "$@"
