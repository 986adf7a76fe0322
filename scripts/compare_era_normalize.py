#!/usr/bin/env python3
"""ERA forward+backward with normalize off / the old composed normalisation (var_mean) / torch_rational::era_normalize,
side by side on one machine (best of interleaved rounds; float32, CPU). The table of record, with
forward and backward apart: scripts/benchmark_cpu.py --era-normalize.

    PYTHONPATH=python TORCH_RATIONAL_LIBRARY=build/cmake/libtorch_rational.so python3 scripts/compare_era_normalize.py
"""
import time
import torch
import torch_rational

def old_normalize(x, kind, cd):
    cd %= x.dim()
    dims = (cd,) if kind == "layer" else tuple(d for d in range(x.dim()) if d not in (0, cd))
    var, mean = torch.var_mean(x, dim=dims, keepdim=True, correction=0)
    return (x - mean) * torch.rsqrt(var + 1e-5)

def bench(fns, x, rounds=5, reps=5):
    """Best-of-rounds ms per forward+backward, the functions interleaved (the machine is shared)."""
    best = [float("inf")] * len(fns)
    for fn in fns:
        fn(x).sum().backward()
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            for _ in range(reps):
                fn(x).sum().backward()
            best[i] = min(best[i], (time.perf_counter() - t) / reps * 1e3)
    return best

torch.manual_seed(0)
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ms per forward+backward (float32)")
print(f"{'case':38s} {'no norm':>8s} {'old norm':>9s} {'new norm':>9s} {'old/none':>9s} {'new/none':>9s}")
for kind, shape, cd, fmt in [("instance", (32, 64, 28, 28), 1, torch.contiguous_format),
                             ("instance", (32, 64, 28, 28), 1, torch.channels_last),
                             ("layer", (64, 64, 256), -1, torch.contiguous_format),
                             ("layer", (32, 64, 28, 28), 1, torch.contiguous_format),
                             ("layer", (32, 64, 28, 28), 1, torch.channels_last)]:
    era = torch_rational.ERA(1, num_groups=shape[cd], channel_dim=cd)
    x = torch.randn(shape).contiguous(memory_format=fmt).requires_grad_()
    f_none = lambda x: era(x)
    f_old = lambda x: torch_rational.functional.era(old_normalize(x, kind, cd), era.linear, era.fractions, channel_dim=cd)
    f_new = lambda x: torch_rational.functional.era(
        torch.ops.torch_rational.era_normalize(x, kind, cd), era.linear, era.fractions, channel_dim=cd)
    t0, t1, t2 = bench([f_none, f_old, f_new], x)
    name = f"{kind} {tuple(shape)}{' NHWC' if fmt == torch.channels_last else ''} dim={cd}"
    print(f"{name:38s} {t0:8.2f} {t1:9.2f} {t2:9.2f} {t1/t0:9.2f} {t2/t0:9.2f}")
