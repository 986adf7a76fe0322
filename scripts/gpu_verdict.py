#!/usr/bin/env python3
"""The verdict of a GPU run (scripts/gpu_run.sh) against the CUDA targets, from what it measured:

  bandwidth   forward and backward of the op each >= 85% of the copy / add ceiling (x.clone(),
              torch.add) at the largest size measured, for every dtype and group layout
  compile     forward+backward >= 1.5x faster than torch.compile of the same formula, same sizes
  vgg step    a VGG-11 training step with PAU (G = 1) <= 1.10x the one with ReLU
  steps       every step of the run (artifact, gtest, pytest, bench, vgg, train) exited 0

    python3 scripts/gpu_verdict.py --out gpu_out [--steps steps.txt]

Reads OUT/benchmark_gpu.json and OUT/benchmark_vgg_step.json (either may be missing: that target is
then "not measured"), writes OUT/results.json (every number plus the checks) and OUT/verdict.txt.
Exit status 0 when every target was measured and met, 1 otherwise."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CEILING_FRACTION = 0.85
COMPILE_SPEEDUP = 1.5
VGG_RATIO = 1.10


def load(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def bandwidth_and_compile_checks(bench) -> list[dict]:
    if not bench or not bench["records"]:
        return [{"target": "bandwidth", "status": "not measured"}, {"target": "compile", "status": "not measured"}]
    ours = [r for r in bench["records"] if r["impl"] == "torch_rational"]
    largest = max(r["log2_numel"] for r in ours)
    at_largest = [r for r in ours if r["log2_numel"] == largest]
    worst_bw = min((r for r in at_largest if r["pass"] in ("forward", "backward")),
                   key=lambda r: r["fraction_of_ceiling"])
    bw_rows = [f"{r['dtype']} G={r['groups']} {r['pass']}: {100 * r['fraction_of_ceiling']:.0f}%"
               for r in at_largest if r["pass"] in ("forward", "backward")]
    checks = [{
        "target": "bandwidth", "size": f"2^{largest}",
        "status": "met" if worst_bw["fraction_of_ceiling"] >= CEILING_FRACTION else "missed",
        "summary": (f"worst {100 * worst_bw['fraction_of_ceiling']:.0f}% of the ceiling "
                    f"({worst_bw['dtype']} G={worst_bw['groups']} {worst_bw['pass']}); target >= "
                    f"{100 * CEILING_FRACTION:.0f}%"),
        "rows": bw_rows,
    }]
    fb = [r for r in at_largest if r["pass"] == "fwd+bwd" and r["speedup_vs_compile"] is not None]
    if not fb:
        checks.append({"target": "compile", "status": "not measured"})
    else:
        worst = min(fb, key=lambda r: r["speedup_vs_compile"])
        checks.append({
            "target": "compile", "size": f"2^{largest}",
            "status": "met" if worst["speedup_vs_compile"] >= COMPILE_SPEEDUP else "missed",
            "summary": (f"worst {worst['speedup_vs_compile']:.2f}x faster than torch.compile "
                        f"({worst['dtype']} G={worst['groups']}); target >= {COMPILE_SPEEDUP}x"),
            "rows": [f"{r['dtype']} G={r['groups']}: {r['speedup_vs_compile']:.2f}x" for r in fb],
        })
    return checks


def vgg_check(vgg) -> dict:
    if not vgg or "pau" not in vgg.get("ratio_vs_relu", {}):
        return {"target": "vgg step", "status": "not measured"}
    ratio = vgg["ratio_vs_relu"]["pau"]
    return {"target": "vgg step", "status": "met" if ratio <= VGG_RATIO else "missed",
            "summary": f"PAU step {ratio:.3f}x ReLU; target <= {VGG_RATIO}x",
            "rows": [f"{name}: {ms:.3f} ms/step" for name, ms in vgg["ms_per_step"].items()]}


def steps_check(path: Path | None) -> dict:
    if path is None or not path.is_file():
        return {"target": "steps", "status": "not measured"}
    rcs = dict(line.split() for line in path.read_text().splitlines() if line.strip())
    failed = [name for name, rc in rcs.items() if rc != "0"]
    return {"target": "steps", "status": "missed" if failed else "met",
            "summary": ("failed: " + ", ".join(f"{n} (rc {rcs[n]})" for n in failed)) if failed
            else f"all {len(rcs)} steps exited 0", "rows": [f"{n}: rc {rc}" for n, rc in rcs.items()]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="the GPU run's output folder (OUT of gpu_run.sh)")
    ap.add_argument("--steps", default=None, help="file of 'step rc' lines (written by gpu_run.sh)")
    args = ap.parse_args()
    out = Path(args.out)
    bench = load(out / "benchmark_gpu.json")
    vgg = load(out / "benchmark_vgg_step.json")
    checks = [steps_check(Path(args.steps) if args.steps else None), *bandwidth_and_compile_checks(bench),
              vgg_check(vgg)]
    device = bench["device"] if bench else "unknown device"
    lines = [f"GPU verdict ({device}, torch {bench['torch'] if bench else '?'}):"]
    for c in checks:
        lines.append(f"  {c['status'].upper():13s} {c['target']:10s} {c.get('summary', '')}")
        lines += [f"      {row}" for row in c.get("rows", [])]
    text = "\n".join(lines)
    print(text)
    (out / "verdict.txt").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps({"checks": checks, "benchmark_gpu": bench,
                                                  "benchmark_vgg_step": vgg}, indent=1))
    return 0 if all(c["status"] == "met" for c in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
