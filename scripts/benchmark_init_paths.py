#!/usr/bin/env python3
"""Module-level costs of the init paths (PWLU construction, statistics-phase forward, realign();
ERA construction, reset_parameters()) of two checkouts side by side, with ratios.

    python3 scripts/benchmark_init_paths.py --base /work/main --new . [--repeats 3]

Each checkout needs its build in build/cmake. Both libraries register the same ops, so each is
timed in a child process of its own; the children alternate (base, new, base, new, ...) and every
figure is the minimum over all of them of a min-of-many loop, single-threaded."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, time, torch, torch_rational as tr
torch.set_num_threads(1)
def best(f, n):
    times = []
    for _ in range(n):
        start = time.perf_counter(); f(); times.append(time.perf_counter() - start)
    return min(times)
small, big = torch.randn(16, 64), torch.randn(32, 64, 32, 32)
pwlu = tr.PWLU(16, init="gelu", realign_steps=10**9)  # stays in the statistics phase
era = tr.ERA(1, init="swish")
print(json.dumps({
    "PWLU(16, init='gelu') construction": best(lambda: tr.PWLU(16, init="gelu"), 200),
    "PWLU statistics-phase forward, x (16, 64)": best(lambda: pwlu(small), 500),
    "PWLU statistics-phase forward, x (32, 64, 32, 32)": best(lambda: pwlu(big), 60),
    "PWLU realign()": best(pwlu.realign, 200),
    "ERA(1, init='swish') construction": best(lambda: tr.ERA(1, init="swish"), 200),
    "ERA reset_parameters()": best(era.reset_parameters, 500),
}))
"""


def run_child(root: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.join(root, "python"),
               TORCH_RATIONAL_LIBRARY=os.path.join(root, "build", "cmake", "libtorch_rational.so"))
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="checkout to compare against (e.g. /work/main)")
    parser.add_argument("--new", required=True, help="checkout with the change")
    parser.add_argument("--repeats", type=int, default=3, help="child processes per checkout (alternating)")
    args = parser.parse_args()
    best = {"base": {}, "new": {}}
    for _ in range(args.repeats):
        for which in ("base", "new"):
            for name, seconds in run_child(getattr(args, which)).items():
                best[which][name] = min(seconds, best[which].get(name, float("inf")))
    print("| operation | base (us) | new (us) | new / base |\n|---|---:|---:|---:|")
    for name, base in best["base"].items():
        new = best["new"][name]
        print(f"| {name} | {base * 1e6:.1f} | {new * 1e6:.1f} | {new / base:.2f} |")


if __name__ == "__main__":
    main()
