#!/usr/bin/env python3
"""rational_train on the GPU: each of the papers' models trains briefly with PAU on a generated data
set (--synthetic, no files), on every device asked for, from the same seed.

A run passes when the binary exits 0 (it fails by itself on a non-finite loss), its summary.json
names the device asked for, and its final training loss is finite. The table puts the devices side
by side; their numbers are not compared: cuDNN's convolutions and CUDA's reductions sum in other
orders than the CPU's, and a short run amplifies that.

    python3 scripts/gpu_train_check.py --binary build/gpu-artifact/bin/rational_train [--devices cuda,cpu]
        [--models lenet,vgg8,mobilenetv2] [--epochs 2] [--json OUT.json]

Exit status 0 when every run passed. scripts/gpu_run.sh runs it as its `train` step.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def train(binary: Path, model: str, device: str, args, out_dir: Path) -> dict:
    run_dir = out_dir / f"{model}_{device}"
    cmd = [str(binary), "--model", model, "--synthetic", "--synthetic-train-size", str(args.train_size),
           "--synthetic-test-size", str(args.test_size), "--activation", "pau", "--epochs", str(args.epochs),
           "--seed", "0", "--device", device, "--output", str(run_dir)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    row = {"model": model, "device": device, "rc": proc.returncode, "seconds": time.perf_counter() - t0,
           "command": " ".join(cmd)}
    problems = []
    if proc.returncode != 0:
        problems.append(f"exit status {proc.returncode}: " + " | ".join(proc.stderr.strip().splitlines()[-3:]))
    else:
        summary = json.loads((run_dir / "summary.json").read_text())
        row.update(final_train_loss=summary["final_train_loss"], test_accuracy=summary["test_accuracy"])
        if summary["device"] != device:
            problems.append(f"summary.json says device {summary['device']!r}")
        if not math.isfinite(summary["final_train_loss"]):
            problems.append(f"final training loss {summary['final_train_loss']}")
    row["problems"] = problems
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--binary", type=Path, required=True, help="the rational_train executable")
    ap.add_argument("--devices", default="cuda,cpu", help="comma-separated devices, each run separately")
    ap.add_argument("--models", default="lenet,vgg8,mobilenetv2", help="comma-separated models")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-size", type=int, default=256, help="generated training samples")
    ap.add_argument("--test-size", type=int, default=128, help="generated test samples")
    ap.add_argument("--timeout", type=float, default=120, help="seconds allowed to each run")
    ap.add_argument("--json", type=Path, default=None, help="write the rows here as JSON")
    args = ap.parse_args()
    if not args.binary.is_file():
        ap.error(f"--binary: {args.binary} is not a file")
    if args.epochs < 1 or args.train_size < 1 or args.test_size < 1:
        ap.error("--epochs, --train-size and --test-size must be at least 1")

    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu_train_check_") as tmp:
        for model in args.models.split(","):
            for device in args.devices.split(","):
                print(f"training {model} on {device} ...", flush=True)
                rows.append(train(args.binary, model, device, args, Path(tmp)))
    print(f"\n{'model':<12} {'device':<6} {'rc':>3} {'seconds':>8} {'train loss':>11} {'test acc':>9}  problems")
    for r in rows:
        loss = f"{r['final_train_loss']:.4f}" if "final_train_loss" in r else "-"
        acc = f"{r['test_accuracy']:.4f}" if "test_accuracy" in r else "-"
        print(f"{r['model']:<12} {r['device']:<6} {r['rc']:>3} {r['seconds']:>8.1f} {loss:>11} {acc:>9}  "
              + ("; ".join(r["problems"]) or "none"))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=1))
    failed = [r for r in rows if r["problems"]]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} runs passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
