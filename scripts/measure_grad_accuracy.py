#!/usr/bin/env python3
"""Coefficient-gradient error of the (5,4) version A power-basis float32 CPU op against float64,
side by side with pure-torch float32 autograd of the same formula (Horner P, explicit Q).

Usage: scripts/measure_grad_accuracy.py [SEEDS]   (default 3; 3 x 2^20 normal inputs, leaky_relu
init, G = 1 and G = 8, grad_output randn and ones). Prints, per case, the maximum over seeds of the
element-wise relative error and the norm-wise error of grad_numerator and grad_denominator. The
float64 truth is the op in float64 (checked against the independent reference by the test suite).
"""
import sys, torch, torch_rational
num0, den0 = torch_rational.init_coefficients("leaky_relu", (5, 4))
def pure(x, a, b, G):  # x: (3, C, S) with C % G == 0; a (G,6), b (G,4)
    C = x.shape[1]; idx = torch.arange(C) // (C // G)
    ae = a[idx].T[:, None, :, None]; be = b[idx].T[:, None, :, None]
    P = ae[5]
    for j in range(4, -1, -1): P = P * x + ae[j]
    Q = 1 + sum(be[k - 1].abs() * x.abs() ** k for k in range(1, 5))
    return P / Q
def grads(x, g, a, b, G, how):
    aa = a.clone().requires_grad_(); bb = b.clone().requires_grad_()
    y = pure(x, aa, bb, G) if how == "pure" else torch_rational.functional.rational(x, aa, bb, version="A", channel_dim=1)
    y.backward(g)
    return torch.cat([aa.grad, bb.grad], 1).double()
res = {}
for seed in range(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
    for G in (1, 8):
        for gk in ("randn", "ones"):
            torch.manual_seed(seed)
            x = torch.randn(3, 8, 2 ** 17) if G == 8 else torch.randn(3, 1, 2 ** 20)
            g = torch.randn_like(x) if gk == "randn" else torch.ones_like(x)
            a = num0.float().repeat(G, 1); b = den0.float().repeat(G, 1)
            ref = grads(x.double(), g.double(), a.double(), b.double(), G, "ours")
            for how in ("ours", "pure"):
                e = (grads(x, g, a, b, G, how) - ref).abs()
                rel = (e / ref.abs())
                res.setdefault((G, gk, how), []).append((rel[:, :6].max().item(), rel[:, 6:].max().item(),
                    (e[:, :6].norm() / ref[:, :6].norm()).item(), (e[:, 6:].norm() / ref[:, 6:].norm()).item()))
for k, v in res.items():
    t = torch.tensor(v)
    print(k, "max over seeds: elementwise rel num %.3g den %.3g | normwise num %.3g den %.3g" % tuple(t.max(0).values.tolist()))
