#!/usr/bin/env python3
"""GPU benchmark of the rational op (PAU: version A, power basis) against the same formula
composed from eager torch ops, torch.compile of that composition, and x.clone() / torch.add as the
memory-bandwidth ceiling. All rows are measured side by side in one run, with CUDA events, after
warm-up.

Passes: forward (no grad), backward (autograd.grad on a retained graph: for this op that is the
fused rational_backward kernel) and forward+backward. Effective bandwidth counts the minimal
bytes: forward reads x and writes y (8 B/elem in float32, 4 in bfloat16), backward reads x and
grad_out and writes grad_x (12 B/elem in float32, 6 in bfloat16); forward+backward the sum.
Ceiling: x.clone() (same bytes as the forward), torch.add(x, g) (same bytes as the backward), and
their sum for forward+backward; "% ceil" = ceiling time / row time. The "rpau" row is the same op
with RPAU noise (--rpau-noise, default 0.1): the same bytes plus the per-element Philox draws.

Inputs are contiguous (N, C, H, W) tensors with C = 64 (--channels), H = W = 32. Groups: G = 1,
G = 8, per-channel (G = C), and per-channel on channels_last memory ("channel_nhwc": the rows
kernels). Other dense permutations run in place without a copy too; non-dense strided inputs
(slices, expanded) get a contiguous copy at the op boundary and are not measured.

    python3 scripts/benchmark_gpu.py                          # CUDA, 2^16 .. 2^28 elements
    python3 scripts/benchmark_gpu.py --max-log2 24 --dtypes float32
    python3 scripts/benchmark_gpu.py --device cpu --max-log2 16 --no-compile   # smoke test

Channel innermost (--innermost-log2, default 24; 0 to skip): a second table, one size, for the
three families (rational PAU (5,4), ERA n = 2, PWLU N = 16 pieces) on the layouts whose channel is
the innermost memory dimension, where the per-channel cases take the rows kernels: channels_last
(N, 64, H, W) with G = 1 and G = C = 64, and (T, 768) with channel_dim = -1 and G = 768 (per
feature, as after a Linear) and G = 8. Forward and forward+backward (autograd.grad), ms and
effective GB/s; "vs G=1": the G = 1 time on the same tensor over this row's time (what the
per-channel parameters cost); "% ceil" as above.

    python3 scripts/benchmark_gpu.py --groups 1 --max-log2 16 --innermost-log2 24   # mostly the innermost table

ERA normalisation (at the --innermost-log2 size; --no-era-normalize to skip): ERA n = 2, G = 1,
without normalisation and after each normalisation of the ERA module (torch_rational::normalized_era)
on NCHW (N, 64, 32, 32), the same tensor channels_last (over channel_dim = 1) and (T, 768) with
channel_dim = -1; forward, backward, forward+backward; last column: this row's time / the time
without normalisation on the same tensor (the CPU target is 2x). JSON: the "era_normalize" list.

--json FILE writes every measurement as a record (rewritten after each size, so an interrupted run
keeps what it measured); scripts/gpu_verdict.py reads it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch_rational  # noqa: F401  (loads the library, registers torch.ops.torch_rational)

GB = 1e9


def expand_coef(c, channels):
    """Column of a (G, K) coefficient tensor -> (1, C, 1, 1) (channel c uses group c // (C / G))."""
    groups = c.shape[0]
    if groups == 1:
        return c[0]
    return c.repeat_interleave(channels // groups).view(1, channels, 1, 1)


def composed_pau(x, a, b):
    """Version A, power basis, grouped over dim 1, from eager torch ops (Horner)."""
    channels = x.shape[1]
    P = expand_coef(a[:, -1], channels)
    for j in range(a.shape[1] - 2, -1, -1):
        P = P * x + expand_coef(a[:, j], channels)
    ax = x.abs()
    Qs = expand_coef(b[:, -1], channels).abs()
    for k in range(b.shape[1] - 2, -1, -1):
        Qs = Qs * ax + expand_coef(b[:, k], channels).abs()
    return P / (1 + Qs * ax)


def op_pau(x, a, b):
    return torch.ops.torch_rational.rational(x, a, b, "A", "power", 1, 0.0, None)


def op_rpau(noise):
    """RPAU: the same op with per-element coefficient noise (Philox draws in the kernel)."""
    seed = torch.tensor([1234], dtype=torch.int64)

    def fn(x, a, b):
        return torch.ops.torch_rational.rational(x, a, b, "A", "power", 1, noise, seed)

    return fn


class Timer:
    """Milliseconds per call: CUDA events on CUDA, perf_counter on CPU; median of `rounds`."""

    def __init__(self, device, warmup, min_time, rounds):
        self.cuda = device.type == "cuda"
        self.warmup, self.min_time, self.rounds = warmup, min_time, rounds

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def __call__(self, fn):
        for _ in range(self.warmup):
            fn()
        self.sync()
        t0 = time.perf_counter()
        fn()
        self.sync()
        one = max(time.perf_counter() - t0, 1e-6)
        iters = int(min(max(self.min_time / one, 3), 2000))
        results = []
        for _ in range(self.rounds):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(iters):
                    fn()
                end.record()
                end.synchronize()
                results.append(start.elapsed_time(end) / iters)
            else:
                t0 = time.perf_counter()
                for _ in range(iters):
                    fn()
                results.append((time.perf_counter() - t0) * 1e3 / iters)
        return statistics.median(results)


def measure(timer, fwd, x, a, b, g):
    """(forward, backward, forward+backward) ms of fwd(x, a, b)."""
    xs, as_, bs = (t.detach().requires_grad_(True) for t in (x, a, b))
    inputs = (xs, as_, bs)

    def forward():
        with torch.no_grad():
            fwd(x, a, b)

    def both():
        torch.autograd.grad(fwd(xs, as_, bs), inputs, g)

    f_ms = timer(forward)
    fb_ms = timer(both)
    graph = [fwd(xs, as_, bs)]  # kept in a list so it can be dropped right after timing

    def backward():
        torch.autograd.grad(graph[0], inputs, g, retain_graph=True)

    b_ms = timer(backward)
    graph.clear()
    return f_ms, b_ms, fb_ms


# The channel-innermost table: (family, op(x, params..., channel_dim), params(G) -> tuple).
def rational_params(groups, gen):
    return (torch.randn(groups, 6, generator=gen) * 0.5, torch.randn(groups, 4, generator=gen) * 0.5)


def era_params(groups, gen):
    fractions = torch.randn(groups, 2, 4, generator=gen) * 0.5
    fractions[..., 3] = fractions[..., 3].abs() + 0.3  # the fractions' widths away from 0
    return (torch.randn(groups, 2, generator=gen) * 0.5, fractions)


def pwlu_params(groups, gen):
    left = -2 - torch.rand(groups, generator=gen)
    return (torch.randn(groups, 17, generator=gen), torch.stack([left, left + 4], 1),
            torch.randn(groups, 2, generator=gen) * 0.1)


INNERMOST_FAMILIES = {
    "rational": (lambda x, a, b, dim: torch.ops.torch_rational.rational(x, a, b, "A", "power", dim, 0.0, None),
                 rational_params),
    "era": (lambda x, lin, fr, dim: torch.ops.torch_rational.era(x, lin, fr, 1e-6, dim), era_params),
    "pwlu": (lambda x, h, bnd, s, dim: torch.ops.torch_rational.pwlu(x, h, bnd, s, dim), pwlu_params),
}


def bench_channel_innermost(timer, device, dtype, log2, gen, emit, records):
    """The channel-innermost table for one dtype (see the module docstring); returns its rows."""
    numel = 1 << log2
    esize = torch.finfo(dtype).bits // 8
    nhwc_shape = (max(numel // (64 * 32 * 32), 1), 64, 32, 32)
    linear_shape = (max(numel // 768, 1), 768)
    # (layout name, shape, channels_last, channel_dim, G)
    cases = [("nhwc", nhwc_shape, True, 1, 1), ("nhwc", nhwc_shape, True, 1, 64),
             ("T,768 dim-1", linear_shape, False, -1, 1), ("T,768 dim-1", linear_shape, False, -1, 768),
             ("T,768 dim-1", linear_shape, False, -1, 8)]
    out = []
    g1_ms = {}
    for layout, shape, channels_last, dim, groups in cases:
        x = (torch.randn(shape, device=device) * 2).to(dtype)
        g = torch.randn(shape, device=device).to(dtype)
        if channels_last:
            x, g = (t.contiguous(memory_format=torch.channels_last) for t in (x, g))
        ceil_f = timer(lambda x=x: x.clone())
        ceil_fb = ceil_f + timer(lambda x=x, g=g: torch.add(x, g))
        n = x.numel()
        for family, (op, make_params) in INNERMOST_FAMILIES.items():
            params = tuple(p.to(device, torch.float32 if dtype != torch.float64 else dtype)
                           for p in make_params(groups, gen))
            leaves = tuple(p.requires_grad_(True) for p in params)
            xs = x.detach().requires_grad_(True)

            def forward(x=x, params=params, op=op, dim=dim):
                with torch.no_grad():
                    op(x, *params, dim)

            def both(xs=xs, leaves=leaves, op=op, dim=dim, g=g):
                torch.autograd.grad(op(xs, *leaves, dim), (xs,) + leaves, g)

            for pname, fn, nbytes, ceil in (("forward", forward, 2 * esize * n, ceil_f),
                                            ("fwd+bwd", both, 5 * esize * n, ceil_fb)):
                ms = timer(fn)
                key = (layout, family, pname)
                if groups == 1:
                    g1_ms[key] = ms
                vs_g1 = g1_ms[key] / ms if key in g1_ms else None
                row = [str(dtype).replace("torch.", ""), f"{groups} {layout}", f"2^{log2}", pname, family,
                       f"{ms:.4f}", f"{nbytes / (ms * 1e-3) / GB:.1f}", f"{100 * ceil / ms:.0f}%",
                       f"{vs_g1:.2f}x vs G=1" if vs_g1 else "-"]
                emit(row)
                out.append(row)
                records.append({"section": "channel_innermost", "dtype": row[0], "groups": groups,
                                "layout": layout, "channel_dim": dim, "log2_numel": log2, "pass": pname,
                                "impl": family, "ms": ms, "gb_per_s": nbytes / (ms * 1e-3) / GB,
                                "fraction_of_ceiling": ceil / ms, "ceiling_ms": ceil, "vs_g1": vs_g1})
        del x, g
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def bench_era_normalize(timer, device, dtype, log2, gen, emit):
    """The ERA normalisation table for one dtype (see the module docstring); returns its records."""
    numel = 1 << log2
    nchw = (torch.randn(max(numel // (64 * 32 * 32), 1), 64, 32, 32, device=device) * 2).to(dtype)
    tokens = (torch.randn(max(numel // 768, 1), 768, device=device) * 2).to(dtype)
    lin, fr = (p.to(device, torch.float32 if dtype != torch.float64 else dtype) for p in era_params(1, gen))
    records = []
    for layout, x, dim, kinds in (("nchw", nchw, 1, ("layer", "instance")),
                                  ("nhwc", nchw.contiguous(memory_format=torch.channels_last), 1, ("layer", "instance")),
                                  ("T,768 dim-1", tokens, -1, ("layer",))):
        g = torch.randn_like(x)
        none_ms = None
        for kind in ("",) + kinds:
            def fwd(x, lin, fr, kind=kind, dim=dim):
                # As the ERA module runs it (on CUDA: era of era_normalize).
                return torch.ops.torch_rational.normalized_era(x, lin, fr, 1e-6, dim, kind)

            times = measure(timer, fwd, x, lin, fr, g)
            none_ms = none_ms or times
            for p, pname in enumerate(("forward", "backward", "fwd+bwd")):
                impl = f"era+{kind}" if kind else "era"
                ratio = times[p] / none_ms[p]
                emit([str(dtype).replace("torch.", ""), f"1 {layout}", f"2^{log2}", pname, impl, f"{times[p]:.4f}",
                      "-", "-", f"{ratio:.2f}x vs none"])
                records.append({"dtype": str(dtype).replace("torch.", ""), "layout": layout, "channel_dim": dim,
                                "log2_numel": log2, "pass": pname, "normalize": kind, "ms": times[p],
                                "vs_none": ratio})
        del x, g
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return records


def shape_for(numel, channels):
    hw = 32 * 32
    if numel % (channels * hw) == 0:
        return (numel // (channels * hw), channels, 32, 32)
    return (1, channels, numel // channels, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--min-log2", type=int, default=16)
    ap.add_argument("--max-log2", type=int, default=28, help="largest size, 2^N elements (default 28)")
    ap.add_argument("--step", type=int, default=2, help="log2 step between sizes (default 2)")
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--groups", nargs="+", default=["1", "8", "channel", "channel_nhwc"],
                    help="1, 8, ..., 'channel' (G = C) or 'channel_nhwc' (G = C, channels_last memory)")
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--degrees", type=int, nargs=2, default=(5, 4), metavar=("M", "N"))
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.05, help="seconds per timed round (default 0.05)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    ap.add_argument("--rpau-noise", type=float, default=0.1,
                    help="also time RPAU with this noise (the 'rpau' row; 0 to skip; default 0.1)")
    ap.add_argument("--compile-static", action="store_true",
                    help="torch.compile(dynamic=False): one compile per shape (slow); default dynamic=True")
    ap.add_argument("--innermost-log2", type=int, default=24,
                    help="size of the channel-innermost table, 2^N elements (default 24; 0 to skip)")
    ap.add_argument("--no-era-normalize", action="store_true", help="skip the ERA normalisation table")
    ap.add_argument("--markdown", default=None, help="also write the table as markdown to this file")
    ap.add_argument("--json", default=None, help="also write the measurements as JSON records to this file")
    args = ap.parse_args()

    device = torch.device(args.device)
    timer = Timer(device, args.warmup, args.min_time, args.rounds)
    m, n = args.degrees
    gen = torch.Generator().manual_seed(0)
    header = (f"# rational op benchmark: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}, "
              f"torch {torch.__version__}, PAU ({m},{n}) version A, power basis")
    print(header)
    cols = ["dtype", "G", "numel", "pass", "impl", "ms", "GB/s", "% ceil", "x vs compile"]
    rows = []

    def emit(row):
        rows.append(row)
        print("  ".join(f"{v:>12}" if i >= 5 else f"{v:<10}" for i, v in enumerate(row)), flush=True)

    print("  ".join(f"{c:>12}" if i >= 5 else f"{c:<10}" for i, c in enumerate(cols)))
    records = []
    era_normalize_records = []  # its own list: gpu_verdict.py reads "records"

    def save_json():
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
                           "torch": torch.__version__, "degrees": [m, n], "records": records,
                           "era_normalize": era_normalize_records}, f, indent=1)

    compiled_cache = {}
    for dtype_name in args.dtypes:
        dtype = getattr(torch, dtype_name)
        esize = torch.finfo(dtype).bits // 8
        for gname in args.groups:
            nhwc = gname == "channel_nhwc"
            groups = args.channels if gname in ("channel", "channel_nhwc") else int(gname)
            gshow = f"{groups}nhwc" if nhwc else str(groups)
            # Coefficients in x's dtype, so the eager composition stays in that dtype too.
            a = (torch.randn(groups, m + 1, generator=gen) * 0.5).to(device, dtype)
            b = (torch.randn(groups, n, generator=gen) * 0.5).to(device, dtype)
            impls = {"torch_rational": op_pau, "eager": composed_pau}
            if args.rpau_noise > 0:
                impls["rpau"] = op_rpau(args.rpau_noise)
            if not args.no_compile:
                key = (dtype_name, gname)
                if key not in compiled_cache:
                    torch._dynamo.reset()
                    compiled_cache[key] = torch.compile(composed_pau, dynamic=not args.compile_static)
                impls["compile"] = compiled_cache[key]
            for log2 in range(args.min_log2, args.max_log2 + 1, args.step):
                numel = 1 << log2
                shape = shape_for(numel, args.channels)
                x = (torch.randn(shape, device=device) * 2).to(dtype)
                g = torch.randn(shape, device=device).to(dtype)
                if nhwc:
                    x = x.contiguous(memory_format=torch.channels_last)
                    g = g.contiguous(memory_format=torch.channels_last)
                ceil_f = timer(lambda x=x: x.clone())
                ceil_b = timer(lambda x=x, g=g: torch.add(x, g))
                ceilings = (ceil_f, ceil_b, ceil_f + ceil_b)
                nbytes = (2 * esize * numel, 3 * esize * numel, 5 * esize * numel)
                results = {name: measure(timer, fn, x, a, b, g) for name, fn in impls.items()}
                for p, pname in enumerate(("forward", "backward", "fwd+bwd")):
                    comp = results.get("compile", (None,) * 3)[p]
                    for name, r in results.items():
                        speed = f"{comp / r[p]:.2f}x" if comp else "-"
                        emit([dtype_name, gshow, f"2^{log2}", pname, name, f"{r[p]:.4f}",
                              f"{nbytes[p] / (r[p] * 1e-3) / GB:.1f}", f"{100 * ceilings[p] / r[p]:.0f}%", speed])
                        records.append({"dtype": dtype_name, "groups": gshow, "log2_numel": log2, "pass": pname,
                                        "impl": name, "ms": r[p], "gb_per_s": nbytes[p] / (r[p] * 1e-3) / GB,
                                        "fraction_of_ceiling": ceilings[p] / r[p], "ceiling_ms": ceilings[p],
                                        "speedup_vs_compile": comp / r[p] if comp else None})
                    ceil_name = ("x.clone()", "torch.add", "clone+add")[p]
                    emit([dtype_name, gshow, f"2^{log2}", pname, ceil_name, f"{ceilings[p]:.4f}",
                          f"{nbytes[p] / (ceilings[p] * 1e-3) / GB:.1f}", "100%", "-"])
                save_json()
                del x, g, results
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    if args.innermost_log2 > 0:
        print("# channel innermost: rational PAU (5,4), ERA n=2, PWLU N=16; last column: the G=1 time on the same "
              "tensor / this row's time")
        for dtype_name in args.dtypes:
            innermost_rows = bench_channel_innermost(timer, device, getattr(torch, dtype_name), args.innermost_log2,
                                                     gen, emit, records)
            rows += innermost_rows
            save_json()
    if args.innermost_log2 > 0 and not args.no_era_normalize:
        print("# ERA normalisation: ERA n=2, G=1, without and with era_normalize; last column: this row's time / "
              "the time without normalisation on the same tensor")
        for dtype_name in args.dtypes:
            era_normalize_records += bench_era_normalize(timer, device, getattr(torch, dtype_name),
                                                         args.innermost_log2, gen, emit)
            save_json()
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(header + "\n\n")
            f.write("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n")
            for r in rows:
                f.write("| " + " | ".join(r) + " |\n")
        print(f"markdown table written to {args.markdown}")


if __name__ == "__main__":
    main()
