#!/usr/bin/env bash
# Quick start, first command: set up + build (scripts/setup.sh, idempotent), then train LeNet with
# PAU on Fashion-MNIST on the CPU with the C++ binary rational_train, then the report (when
# scripts/report.py is there).
#
#   scripts/run_demo.sh [RUN_DIR] [extra rational_train flags...]     (RUN_DIR default: runs/demo)
#
# Environment: DEMO_EPOCHS (default 3), TORCH_RATIONAL_BUILD_DIR (default build/cmake).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "$ROOT"
RUN_DIR="${1:-runs/demo}"
shift || true
BIN="${TORCH_RATIONAL_BUILD_DIR:-$ROOT/build/cmake}/rational_train"
[ -x "$BIN" ] || { echo "run_demo: $BIN was not built (is BUILD_TRAINING off?)" >&2; exit 1; }

echo "== rational_train: LeNet + PAU on Fashion-MNIST, ${DEMO_EPOCHS:-3} epochs on the CPU -> $RUN_DIR"
rm -f "$RUN_DIR/checkpoint.pt"  # a fresh run each time (use rational_train --resume to continue one)
"$BIN" --model lenet --dataset fashion-mnist --activation pau --epochs "${DEMO_EPOCHS:-3}" --device cpu \
  --output "$RUN_DIR" "$@"

if [ -f scripts/report.py ]; then
  echo "== report"
  python3 scripts/report.py "$RUN_DIR" --output "$RUN_DIR/report"
fi

python3 - "$RUN_DIR" <<'PY'
import json, sys, pathlib
d = pathlib.Path(sys.argv[1])
s = json.loads((d / "summary.json").read_text())
print(f"\n== test accuracy after {s['epochs']} epoch(s): {s['test_accuracy']:.4f} "
      f"(best {s['best_test_accuracy']:.4f} at epoch {s['best_epoch']}), {s['seconds']:.1f} s on {s['threads']} CPU threads")
print(f"per-epoch metrics : {d / 'metrics.csv'}")
print(f"summary + curves  : {d / 'summary.json'} (activation_curves, activation_parameters)")
print(f"checkpoint        : {d / 'checkpoint.pt'}")
rep = d / "report"
if rep.is_dir():
    print(f"report and plots  : {rep / 'results.md'}, {rep / 'accuracy_curves.png'}, {rep / 'activations.png'}")
PY
