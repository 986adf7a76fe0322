#!/usr/bin/env python3
"""CPU benchmark of the rational op against the same formula composed from eager torch ops,
torch.compile of that composition, and F.leaky_relu (the cheapest possible activation).

Prints one table, all rows measured in the same run: forward, backward (input and coefficient
gradients) and forward+backward, median over repeats after warm-up, and ratios to this op.

    python3 scripts/benchmark_cpu.py                      # 2^22 float32 elements, (5,4), version A
    python3 scripts/benchmark_cpu.py --numel 1048576 --degrees 3 2 --dtype bfloat16
    python3 scripts/benchmark_cpu.py --layouts            # per-channel groups on each layout instead

--layouts prints, for each family (rational (M,N) version A, ERA n=1, PWLU N=16), grouped
parameters on the layouts a model uses, each against one group (G=1) on the same tensor:
NCHW (16,64,64,64) with G=C on NCHW and on channels_last, and (T,768) with G=768 and G=8 along
channel_dim=-1 (T*768 ~ --numel elements). Targets: G=C channels_last and G=768 within 1.25x of
G=1, G=8 within 1.1x, forward and backward.

    python3 scripts/benchmark_cpu.py --era-normalize      # ERA with each normalisation instead
    python3 scripts/benchmark_cpu.py --era-normalize --clock cpu --threads 1   # CPU time, on a busy machine

--era-normalize prints ERA (n=1, swish init, G=1) without normalisation and with each
normalisation the ERA module offers, as the module runs it (F.era(normalize=...): one fused
kernel per pass on CPU float32) and as the two ops era(era_normalize(x)) ("2 ops"), on NCHW (N,64,32,32), the same
tensor channels_last (normalize over channel_dim=1), and (T,768) with channel_dim=-1 (N*65536 and
T*768 ~ --numel elements); x = time relative to ERA without normalisation on the same tensor.
Target: every row within 2x, forward+backward.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import torch_rational


def composed_rational(x, a, b):
    """Version A, power basis, from eager torch ops (what a user would write without this library)."""
    P = a[-1]
    for j in range(a.numel() - 2, -1, -1):
        P = P * x + a[j]
    ax = x.abs()
    Qs = b[-1].abs()
    for k in range(b.numel() - 2, -1, -1):
        Qs = Qs * ax + b[k].abs()
    return P / (1 + Qs * ax)


def timeit(fn, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def measure(name, fwd, x, params, g, repeats, warmup):
    """fwd(x, *params) -> y. Returns (forward ms, backward ms, forward+backward ms)."""
    inputs = [x] + list(params)

    def forward():
        with torch.no_grad():
            fwd(x, *params)

    def both():
        out = fwd(x, *params)
        torch.autograd.grad(out, inputs, g)

    f_ms = timeit(forward, repeats, warmup)
    fb_ms = timeit(both, repeats, warmup)
    y = fwd(x, *params)  # one graph, kept alive only for the backward timing

    def backward():
        torch.autograd.grad(y, inputs, g, retain_graph=True)

    b_ms = timeit(backward, repeats, warmup)
    del y
    return name, f_ms, b_ms, fb_ms


def family_ops(m: int, n: int, groups: int, channel_dim: int, dtype):
    """(name, fwd(x, *params), params) of each family with `groups` groups along channel_dim."""
    a, b = torch_rational.init_coefficients("leaky_relu", (m, n))
    ra = a.to(dtype).repeat(groups, 1).requires_grad_()
    rb = b.to(dtype).repeat(groups, 1).requires_grad_()
    pw = torch_rational.PWLU(16, realign_steps=0)
    ph, pb, ps = (t.detach()[0].to(dtype).repeat(groups, *([1] * (t.dim() - 1))).requires_grad_()
                  for t in (pw.heights, pw.bounds, pw.slopes))
    lin, fr = torch_rational.era_init_parameters("swish", 1)
    el = lin.to(dtype).repeat(groups, 1).requires_grad_()
    ef = fr.to(dtype).repeat(groups, 1, 1).requires_grad_()
    F_ = torch_rational.functional
    return [
        (f"rational ({m},{n}) A", lambda x, a, b: F_.rational(x, a, b, channel_dim=channel_dim), (ra, rb)),
        ("ERA n=1", lambda x, l, f: F_.era(x, l, f, channel_dim=channel_dim), (el, ef)),
        ("PWLU N=16", lambda x, h, bd, s: F_.pwlu(x, h, bd, s, channel_dim=channel_dim), (ph, pb, ps)),
    ]


def layout_table(args, dtype) -> None:
    """Grouped parameters on channel-outer and channel-innermost layouts, against G=1 on the same tensor."""
    m, n = args.degrees
    C = 64
    hw = max(1, int(round((args.numel / (16 * C)) ** 0.5)))
    nchw = (torch.randn(16, C, hw, hw) * 2).to(dtype)
    nhwc = nchw.contiguous(memory_format=torch.channels_last)
    T = max(1, args.numel // 768)
    tc = (torch.randn(T, 768) * 2).to(dtype)
    # (label, x, groups, channel_dim); the reference row (G=1) of a tensor comes first.
    cases = [
        ("NCHW G=1", nchw, 1, 1),
        ("NCHW G=C=64", nchw, C, 1),
        ("channels_last G=1", nhwc, 1, 1),
        ("channels_last G=C=64", nhwc, C, 1),
        (f"({T},768) G=1", tc, 1, -1),
        (f"({T},768) G=768 dim=-1", tc, 768, -1),
        (f"({T},768) G=8 dim=-1", tc, 8, -1),
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}; {args.dtype}; median of {args.repeats} after "
          f"{args.warmup} warm-up, the rows of a tensor interleaved; x = time relative to G=1 on the same tensor")
    header = f"| {'family':<18} | {'layout, groups':<26} | {'forward ms':>10} | {'backward ms':>11} | "              f"{'fwd+bwd ms':>10} | {'fwd x':>6} | {'bwd x':>6} | {'fwd+bwd x':>9} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for fam_index in range(3):
        for same_tensor in _by_tensor(cases):
            timers = []
            for label, x0, groups, cdim in same_tensor:
                name, fwd, params = family_ops(m, n, groups, cdim, dtype)[fam_index]
                x = x0.detach().clone(memory_format=torch.preserve_format).requires_grad_()
                timers.append((name, label, Timer(fwd, x, params, torch.randn_like(x))))
            _time_interleaved([t[2] for t in timers], args)
            ref = timers[0][2].medians()
            for name, label, t in timers:
                f_ms, b_ms, fb_ms = t.medians()
                print(f"| {name:<18} | {label:<26} | {f_ms:>10.2f} | {b_ms:>11.2f} | {fb_ms:>10.2f} | "
                      f"{f_ms / ref[0]:>6.2f} | {b_ms / ref[1]:>6.2f} | {fb_ms / ref[2]:>9.2f} |", flush=True)


def era_normalize_table(args, dtype) -> None:
    """ERA without and with each normalisation, on the layouts a model uses, rows of a tensor interleaved."""
    n = max(1, args.numel // (64 * 32 * 32))
    nchw = torch.randn(n, 64, 32, 32).to(dtype)
    T = max(1, args.numel // 768)
    tokens = torch.randn(T, 768).to(dtype)
    tensors = [(f"NCHW ({n},64,32,32)", nchw, 1, ("layer", "instance")),
               ("channels_last, same", nchw.contiguous(memory_format=torch.channels_last), 1, ("layer", "instance")),
               (f"({T},768) dim=-1", tokens, -1, ("layer",))]
    lin, fr = (t.to(dtype).requires_grad_() for t in torch_rational.era_init_parameters("swish", 1))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}; {args.dtype}; ERA n=1, G=1; median of {args.repeats} after "
          f"{args.warmup} warm-up, {args.clock} clock, the rows of a tensor interleaved; x = time relative to ERA without "
          f"normalisation on the same tensor")
    header = f"| {'layout':<22} | {'normalisation':<20} | {'forward ms':>10} | {'backward ms':>11} | " \
             f"{'fwd+bwd ms':>10} | {'fwd x':>6} | {'bwd x':>6} | {'fwd+bwd x':>9} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for label, x0, cdim, kinds in tensors:
        timers = []
        # Each normalisation as the ERA module runs it (F.era(normalize=...), fused where it can be),
        # and as the two ops era(era_normalize(x)), for comparison.
        for kind, two_ops in [("", False)] + [(k, t) for k in kinds for t in (False, True)]:
            def fwd(x, lin, fr, kind=kind, cdim=cdim, two_ops=two_ops):
                if two_ops:
                    x = torch.ops.torch_rational.era_normalize(x, kind, cdim)
                return torch_rational.functional.era(x, lin, fr, channel_dim=cdim,
                                                     normalize=None if two_ops else kind or None)
            x = x0.detach().clone(memory_format=torch.preserve_format).requires_grad_()
            name = (f"{kind} dim={cdim}" if kind == "layer" else (kind or "none")) + (", 2 ops" if two_ops else "")
            timers.append((name, Timer(fwd, x, (lin, fr), torch.randn_like(x))))
        _time_interleaved([t for _, t in timers], args)
        ref = timers[0][1].medians()
        for name, t in timers:
            f_ms, b_ms, fb_ms = t.medians()
            print(f"| {label:<22} | {name:<20} | {f_ms:>10.2f} | {b_ms:>11.2f} | {fb_ms:>10.2f} | "
                  f"{f_ms / ref[0]:>6.2f} | {b_ms / ref[1]:>6.2f} | {fb_ms / ref[2]:>9.2f} |", flush=True)


def _time_interleaved(timers, args):
    """Warm-up, then one repeat of each timer in turn, so a burst of load from other processes on a
    shared machine hits all of them alike."""
    for t in timers:
        t.warm(args.warmup)
    for _ in range(args.repeats):
        for t in timers:
            t.once()


def _by_tensor(cases):
    """The cases grouped by the tensor they run on (in order; the G=1 row first in each)."""
    groups = []
    for case in cases:
        if groups and groups[-1][0][1] is case[1]:
            groups[-1].append(case)
        else:
            groups.append([case])
    return groups


class Timer:
    """Forward, backward and forward+backward times of fwd(x, *params) with grad_output g.
    Timer.clock: time.perf_counter (wall) or time.process_time (CPU time of all threads, --clock cpu:
    on a machine whose CPU quota other processes exhaust, wall times come in scheduler slices)."""

    clock = time.perf_counter

    def __init__(self, fwd, x, params, g):
        self.fwd, self.x, self.params, self.g = fwd, x, params, g
        self.inputs = [x] + list(params)
        self.times = ([], [], [])

    def _forward(self):
        with torch.no_grad():
            self.fwd(self.x, *self.params)

    def _both(self):
        torch.autograd.grad(self.fwd(self.x, *self.params), self.inputs, self.g)

    def _backward(self, y):
        torch.autograd.grad(y, self.inputs, self.g, retain_graph=True)

    def warm(self, n):
        for _ in range(n):
            self._forward()
            self._both()

    def once(self):
        y = self.fwd(self.x, *self.params)
        for k, fn in enumerate((self._forward, lambda: self._backward(y), self._both)):
            t0 = Timer.clock()
            fn()
            self.times[k].append(Timer.clock() - t0)

    def medians(self):
        return tuple(statistics.median(t) * 1e3 for t in self.times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--numel", type=int, default=1 << 22, help="elements of x (default 2^22)")
    ap.add_argument("--degrees", type=int, nargs=2, default=(5, 4), metavar=("M", "N"))
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float64"])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    ap.add_argument("--layouts", action="store_true",
                    help="instead: grouped parameters on NCHW / channels_last / (T,768), against G=1")
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                    help="--layouts / --era-normalize: wall time, or CPU time of the process (all threads)")
    ap.add_argument("--era-normalize", action="store_true",
                    help="instead: ERA without and with each normalisation, on NCHW / channels_last / (T,768)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    if args.clock == "cpu":
        Timer.clock = time.process_time
    if args.era_normalize:
        torch.manual_seed(0)
        era_normalize_table(args, dtype)
        return
    if args.layouts:
        torch.manual_seed(0)
        layout_table(args, dtype)
        return
    m, n = args.degrees
    torch.manual_seed(0)
    x = (torch.randn(args.numel) * 2).to(dtype).requires_grad_()
    g = torch.randn(args.numel).to(dtype)
    a, b = torch_rational.init_coefficients("leaky_relu", (m, n))
    a = a.float().requires_grad_()
    b = b.float().requires_grad_()

    def op(x, a, b):
        return torch_rational.functional.rational(x, a, b)

    def leaky(x):
        return F.leaky_relu(x, 0.01)

    # One untimed pass over every implementation first: the first 16 MB allocations of a process
    # go through mmap and page faults until glibc raises its dynamic mmap threshold, which would
    # otherwise penalise whichever row is measured first.
    for fn, params in [(op, (a, b)), (composed_rational, (a, b)), (leaky, ())]:
        measure("warm-up", fn, x, params, g, 2, 2)

    rows = [measure("torch_rational (this op)", op, x, (a, b), g, args.repeats, args.warmup)]
    rows.append(measure("eager torch composition", composed_rational, x, (a, b), g, args.repeats, args.warmup))
    if not args.no_compile:
        compiled = torch.compile(composed_rational, dynamic=False)
        rows.append(measure("torch.compile(composition)", compiled, x, (a, b), g, args.repeats, args.warmup))
    # leaky_relu has no coefficients: its backward is the input gradient only.
    rows.append(measure("F.leaky_relu", leaky, x, (), g, args.repeats, args.warmup))
    # PWLU with N = 16 pieces (heights, bounds, slopes of a relu on [-3, 3]); its backward
    # includes all parameter gradients.
    pw = torch_rational.PWLU(16, realign_steps=0)
    pw_params = tuple(t.detach().float().requires_grad_() for t in (pw.heights[0], pw.bounds[0], pw.slopes[0]))

    def pwlu(x, h, bd, s):
        return torch_rational.functional.pwlu(x, h, bd, s)

    measure("warm-up", pwlu, x, pw_params, g, 2, 2)
    rows.append(measure("torch_rational PWLU (N=16)", pwlu, x, pw_params, g, args.repeats, args.warmup))
    # ERA with n = 1 fraction (swish init), and the same formula from eager torch ops; both
    # backwards include the parameter gradients.
    era_lin, era_fr = (t.float().requires_grad_() for t in torch_rational.era_init_parameters("swish", 1))

    def era(x, lin, fr):
        return torch_rational.functional.era(x, lin, fr)

    def composed_era(x, lin, fr):
        c, d, e, f = fr[0]
        return lin[0] * x + lin[1] + (c * x + d) / ((x - e) ** 2 + f * f + 1e-6)

    measure("warm-up", era, x, (era_lin, era_fr), g, 2, 2)
    rows.append(measure("torch_rational ERA (n=1)", era, x, (era_lin, era_fr), g, args.repeats, args.warmup))
    rows.append(measure("eager ERA composition (n=1)", composed_era, x, (era_lin, era_fr), g, args.repeats,
                        args.warmup))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}; x: {args.numel} x {args.dtype}, degrees ({m},{n}), "
          f"version A, power basis; median of {args.repeats} after {args.warmup} warm-up")
    ours = rows[0]
    header = f"| {'implementation':<28} | {'forward ms':>10} | {'backward ms':>11} | {'fwd+bwd ms':>10} | " \
             f"{'fwd x':>7} | {'bwd x':>7} | {'fwd+bwd x':>9} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, f_ms, b_ms, fb_ms in rows:
        print(f"| {name:<28} | {f_ms:>10.2f} | {b_ms:>11.2f} | {fb_ms:>10.2f} | "
              f"{f_ms / ours[1]:>7.2f} | {b_ms / ours[2]:>7.2f} | {fb_ms / ours[3]:>9.2f} |")
    print("(x = time relative to torch_rational: above 1 means slower than this op)")


if __name__ == "__main__":
    main()
