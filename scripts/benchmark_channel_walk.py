#!/usr/bin/env python3
"""Single-threaded microbenchmark of the CPU channel walk's backward (the block bodies of
rational_backward and era_backward on a channel-innermost layout), for one or more builds of the
library side by side.

Each library runs in its own process (two builds of the op library cannot be loaded into one), the
processes alternating round by round so that load from other processes hits them alike; a row
reports the minimum over all rounds and repeats, and its ratio to the first library.

    python3 scripts/benchmark_channel_walk.py --library build/cmake/libtorch_rational.so \\
        /work/main/build/cmake/libtorch_rational.so

Cases: (rows, C) float32 with channel_dim=-1, G = C groups (every channel its own parameters: the
channel walk) and G = 1 (the run walk, its target), C = --channels (64 and 768), --numel elements (default 2^18:
the arrays stay in L2, so the row shows the walk's compute, not memory bandwidth); rational (5,4)
version A and ERA n=1; the backward op called directly (input and parameter gradients), so
autograd's overhead is not in the time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def measure(numel: int, repeats: int, channels: list[int]) -> dict:
    """In the child process: {case: min seconds over `repeats` calls}."""
    import torch
    import torch_rational

    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = {}
    for C in channels:
        x = torch.randn(max(1, numel // C), C) * 2
        g = torch.randn_like(x)
        a1, b1 = torch_rational.init_coefficients("leaky_relu", (5, 4))
        lin1, fr1 = torch_rational.era_init_parameters("swish", 1)
        ops = {}
        for G in (1, C):  # G = 1: the run walk on the same tensor, the target of the channel walk
            a, b = a1.repeat(G, 1), b1.repeat(G, 1)
            lin, fr = lin1.repeat(G, 1), fr1.repeat(G, 1, 1)
            ops[f"rational (5,4) A, C={C}, G={G}"] = lambda x=x, g=g, a=a, b=b: (
                torch.ops.torch_rational.rational_backward(g, x, a, b, "A", "power", -1, 0.0, None, [True] * 3))
            ops[f"ERA n=1, C={C}, G={G}"] = lambda x=x, g=g, lin=lin, fr=fr: (
                torch.ops.torch_rational.era_backward(g, x, lin, fr, 1e-6, -1, [True] * 3))
        for name, fn in ops.items():
            for _ in range(3):
                fn()
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t0)
            out[name] = best
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--library", nargs="+", default=[], help="libtorch_rational.so of each build to compare")
    ap.add_argument("--numel", type=int, default=1 << 18, help="elements of x (default 2^18)")
    ap.add_argument("--rounds", type=int, default=5, help="processes per library, alternated")
    ap.add_argument("--repeats", type=int, default=20, help="calls timed per case and process")
    ap.add_argument("--channels", type=int, nargs="+", default=[64, 768], help="values of C (default 64 768)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.numel, args.repeats, args.channels)))
        return
    if not args.library:
        ap.error("--library: give at least one libtorch_rational.so")
    best = [{} for _ in args.library]
    for _ in range(args.rounds):
        for i, lib in enumerate(args.library):
            env = dict(os.environ, TORCH_RATIONAL_LIBRARY=os.path.abspath(lib))
            res = subprocess.run([sys.executable, __file__, "--child", "--numel", str(args.numel), "--repeats",
                                  str(args.repeats), "--channels", *map(str, args.channels)],
                                 env=env, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                sys.exit(f"{lib}: the measuring process failed:\n{res.stderr}")
            for case, t in json.loads(res.stdout.splitlines()[-1]).items():
                best[i][case] = min(best[i].get(case, float("inf")), t)
    print(f"1 thread, float32, {args.numel} elements, channel_dim=-1; min over {args.rounds} processes x "
          f"{args.repeats} calls per library, processes alternated; x = time relative to library 1")
    for i, lib in enumerate(args.library):
        print(f"  library {i + 1}: {lib}")
    header = f"| {'case':<32} |" + "".join(f" {'lib ' + str(i + 1) + ' ms':>9} |" for i in range(len(args.library))) + \
        "".join(f" {'x ' + str(i + 1):>6} |" for i in range(1, len(args.library)))
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")
    for case in best[0]:
        times = [b[case] * 1e3 for b in best]
        print(f"| {case:<32} |" + "".join(f" {t:>9.3f} |" for t in times) +
              "".join(f" {t / times[0]:>6.2f} |" for t in times[1:]))


if __name__ == "__main__":
    main()
