#!/usr/bin/env python3
"""Prototype of the least-squares / near-minimax fitting procedure for rational activations.

Pure torch float64, only ops that exist in LibTorch (linalg.lstsq, cat, eye, elementwise, norm).
Run:  python3 scripts/prototype_fit.py

Procedure (fit):
  1. F = basis matrix f_0..f_max(m,n) on the given grid.
  2. Denominator starts: b_k = c / max|g_k| for c in START_CONSTANTS (C: b_0 = 0.9), the linearised
     (Levy) least-squares solution and its 3rd Sanathanan-Koerner reweighting (A: abs of those).
  3. Per start: a = lstsq(F_num / Q, y); Levenberg-Marquardt on the L2 error (ITERS_L2 steps), then
     LM on sum |r/s|^p for p in P_SCHEDULE (ITERS_P steps each, s = max error at stage entry),
     keeping a stage only if the max error did not grow.  Version A keeps b >= 0 by projection.
  4. Return the start with the smallest max error on the grid.
"""
import math
import time

import torch

torch.set_num_threads(1)
DT = torch.float64

# ---------------------------------------------------------------- bases


def recurrence(basis, k):
    """(alpha_k, beta_k, gamma_k) for f_{k+1} = (alpha_k x + beta_k) f_k - gamma_k f_{k-1}."""
    if basis == "power":
        return 1.0, 0.0, 0.0
    if basis == "chebyshev_t":
        return (1.0 if k == 0 else 2.0), 0.0, 1.0
    if basis == "chebyshev_u":
        return 2.0, 0.0, 1.0
    if basis == "hermite":
        return 2.0, 0.0, 2.0 * k
    if basis == "hermite_e":
        return 1.0, 0.0, float(k)
    if basis == "laguerre":
        return -1.0 / (k + 1), (2.0 * k + 1) / (k + 1), k / (k + 1.0)
    if basis == "legendre":
        return (2.0 * k + 1) / (k + 1), 0.0, k / (k + 1.0)
    raise ValueError(basis)


def basis_matrix(x, degree, basis):
    """(N, degree+1) matrix with columns f_0..f_degree."""
    cols = [torch.ones_like(x)]
    prev = torch.zeros_like(x)
    for k in range(degree):
        al, be, ga = recurrence(basis, k)
        nxt = (al * x + be) * cols[-1] - ga * prev
        prev = cols[-1]
        cols.append(nxt)
    return torch.stack(cols, dim=1)


# ---------------------------------------------------------------- model
#
# theta = [a_0..a_m, b...] (b has n entries for A/B/N, n+1 for C).
# For A the fitter keeps b >= 0 (projection), so |b_k| = b_k and the result is directly usable.


def denominator_and_jacobian(b, F, version):
    """Q (N,) and dQ/db (N, nb). F: (N, D+1) basis matrix, D >= n."""
    nb = b.numel()
    if version == "A":
        G = F[:, 1:nb + 1].abs()
        return 1.0 + G @ b.abs(), G * torch.where(b >= 0, 1.0, -1.0)
    if version in ("B", "C"):
        G = F[:, 1:nb + 1] if version == "B" else F[:, 0:nb]
        S = G @ b
        sgn = torch.where(S >= 0, 1.0, -1.0).to(DT)
        return (1.0 if version == "B" else 0.1) + S.abs(), G * sgn.unsqueeze(1)
    if version == "N":
        G = F[:, 1:nb + 1]
        return 1.0 + G @ b, G
    raise ValueError(version)


def residual_and_jacobian(theta, F, y, m, version):
    """r = P/Q - y and dr/dtheta (analytic)."""
    a, b = theta[:m + 1], theta[m + 1:]
    Q, dQ = denominator_and_jacobian(b, F, version)
    R = (F[:, :m + 1] @ a) / Q
    J = torch.cat([F[:, :m + 1] / Q.unsqueeze(1), -(R / Q).unsqueeze(1) * dQ], dim=1)
    return R - y, J


def max_err(theta, F, y, m, version):
    r, _ = residual_and_jacobian(theta, F, y, m, version)
    e = r.abs().max().item()
    return e if math.isfinite(e) else math.inf


# ---------------------------------------------------------------- fitting


def solve_ls(A, rhs, ridge):
    """argmin_x |A x - rhs|^2 + ridge |D x|^2, D = column norms of A.

    Columns are scaled to unit norm, sqrt(ridge) I is appended (always full rank), and the
    plain-QR driver "gels" is used: the default "gelsy" (pivoted QR) is not bitwise reproducible
    run to run with MKL, "gels" is. Non-finite input (e.g. a version N start whose denominator is
    exactly zero at a point) gives NaNs, which the callers reject.
    """
    P = A.shape[1]
    if not (bool(torch.isfinite(A).all()) and bool(torch.isfinite(rhs).all())):
        return torch.full((P,), math.nan, dtype=DT)  # rejected by the callers; LAPACK must not see it
    d = A.norm(dim=0).clamp_min(1e-300)
    As = torch.cat([A / d, math.sqrt(ridge) * torch.eye(P, dtype=DT)], dim=0)
    bs = torch.cat([rhs, torch.zeros(P, dtype=DT)])
    return torch.linalg.lstsq(As, bs.unsqueeze(1), driver="gels").solution.squeeze(1) / d


def denominator_starts(F, y, m, n, version):
    """Candidate denominator coefficient vectors."""
    N = F.shape[0]
    nb = n + 1 if version == "C" else n
    k0 = 0 if version == "C" else 1
    G = F[:, k0:k0 + nb]
    if version == "A":
        G = G.abs()
    scale = G.abs().max(dim=0).values.clamp_min(1e-12)  # max |f_k| on the grid
    starts = []
    for c in START_CONSTANTS:  # every denominator term reaches c on the range
        b = c / scale
        if version == "C":
            b[0] = 0.9  # Q = 0.1 + |0.9 + ...|  ~ 1 + ...
        starts.append(b)
    # linearised least squares (Levy), then Sanathanan-Koerner reweighting (weights 1/|Q_prev|):
    #   sum_j a_j f_j - y * sum_k c_k g_k = q0 * y,  g_k = |f_k| for A, f_k otherwise
    q0 = 0.1 if version == "C" else 1.0
    M = torch.cat([F[:, :m + 1], -y.unsqueeze(1) * G], dim=1)
    w = torch.ones(N, dtype=DT)
    for it in range(SK_ITERS + 1):
        sol = solve_ls(M * w.unsqueeze(1), q0 * y * w, RIDGE)
        if not bool(torch.isfinite(sol).all()):
            break
        c = sol[m + 1:].clone()
        if it == 0 or it == SK_ITERS:
            starts.append(c.abs() if version == "A" else c)
        Qlin = (q0 + G @ c).abs()
        w = 1.0 / Qlin.clamp_min(1e-3 * Qlin.max().item() + 1e-300)
    return starts


def best_numerator(b, F, y, m, version):
    """For a fixed denominator the numerator is a linear least-squares problem."""
    Q, _ = denominator_and_jacobian(b, F, version)
    return solve_ls(F[:, :m + 1] / Q.unsqueeze(1), y, RIDGE)


def levenberg_marquardt(theta, F, y, m, version, p, s, iters):
    """Minimise sum_i |r_i/s|^p by LM on the residuals rho_i = sign(r_i) |r_i/s|^(p/2).

    s (fixed within a call) is the max error at entry, so rho stays O(1): no overflow.
    Column-scaled damped step: delta = solve_ls(J, -rho, lam), i.e. [J/d; sqrt(lam) I] delta' =
    [-rho; 0], delta = delta'/d, d = column norms of J.  Accept if the cost decreases (lam /= 3), else lam *= 4.
    """
    h = p / 2.0

    def evaluate(th):
        r, J = residual_and_jacobian(th, F, y, m, version)
        u = (r / s).abs()
        rho = u ** h * torch.sign(r)
        Jr = (h / s) * (u ** (h - 1.0)).unsqueeze(1) * J if h != 1.0 else J / s
        return rho, Jr

    rho, J = evaluate(theta)
    cost = (rho * rho).sum().item()
    lam = LM_LAMBDA0
    for _ in range(iters):
        delta = solve_ls(J, -rho, lam)
        trial = theta + delta
        if version == "A":
            trial[m + 1:] = trial[m + 1:].clamp_min(0.0)
        rho2, J2 = evaluate(trial)
        cost2 = (rho2 * rho2).sum().item()
        if math.isfinite(cost2) and bool(torch.isfinite(J2).all()) and cost2 < cost:
            converged = cost - cost2 <= LM_RTOL * cost
            theta, rho, J, cost = trial, rho2, J2, cost2
            lam = max(lam / 3.0, 1e-12)
            if converged:
                break
        else:
            lam *= 4.0
            if lam > 1e10:
                break
    return theta


START_CONSTANTS = (0.01, 0.1, 1.0, 10.0)
SK_ITERS = 3
RIDGE = 1e-14
LM_LAMBDA0 = 1e-3
LM_RTOL = 1e-10
ITERS_L2 = 50
P_SCHEDULE = (3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
ITERS_P = 10


def fit(x, y, m, n, version="A", basis="power"):
    """Returns (max_error_on_grid, a, b)."""
    F = basis_matrix(x, max(m, n), basis)
    # fallback (only used if every start fails): polynomial least squares, Q == 1 (C: 0.1 + |0.9|)
    b0 = torch.zeros(n + 1 if version == "C" else n, dtype=DT)
    if version == "C":
        b0[0] = 0.9
    a0 = best_numerator(b0, F, y, m, version)
    best = (max_err(torch.cat([a0, b0]), F, y, m, version), a0, b0)
    for b in denominator_starts(F, y, m, n, version):
        a = best_numerator(b, F, y, m, version)
        theta = torch.cat([a, b])
        if not bool(torch.isfinite(theta).all()):
            continue
        e = max_err(theta, F, y, m, version)
        if not math.isfinite(e):
            continue
        # least squares
        theta = levenberg_marquardt(theta, F, y, m, version, 2.0, e, ITERS_L2)
        e = max_err(theta, F, y, m, version)
        # p-norm continuation towards minimax; keep a stage only if the max error does not grow
        for p in P_SCHEDULE:
            th1 = levenberg_marquardt(theta, F, y, m, version, float(p), e, ITERS_P)
            e1 = max_err(th1, F, y, m, version)
            if e1 <= e:
                theta, e = th1, e1
        if e < best[0]:
            best = (e, theta[:m + 1].clone(), theta[m + 1:].clone())
    return best


# ---------------------------------------------------------------- targets

FUNCS = {
    "relu": torch.relu,
    "leaky_relu": lambda x: torch.nn.functional.leaky_relu(x, 0.01),
    "leaky_relu_0.2": lambda x: torch.nn.functional.leaky_relu(x, 0.2),
    "leaky_relu_0.3": lambda x: torch.nn.functional.leaky_relu(x, 0.3),
    "swish": torch.nn.functional.silu,
    "gelu": lambda x: torch.nn.functional.gelu(x),
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "elu": torch.nn.functional.elu,
    "identity": lambda x: x.clone(),
}

BAR = {"relu": 0.035, "leaky_relu": 0.035, "gelu": 0.005, "swish": 0.001, "tanh": 0.001,
       "sigmoid": 0.001}

CONFIGS = ([((5, 4), v, "power") for v in "ABCN"] + [((3, 2), v, "power") for v in "ABC"]
           + [((5, 4), "A", b) for b in ("chebyshev_t", "chebyshev_u", "hermite", "hermite_e",
                                          "laguerre", "legendre")])


def main():
    x = torch.linspace(-3.0, 3.0, 4001, dtype=DT)
    xd = torch.linspace(-3.0, 3.0, 100001, dtype=DT)  # dense check grid
    names = list(FUNCS)
    print("%-26s" % "config" + "".join("%15s" % f for f in names) + "   s/fit max (mean)")
    fails = []
    for (m, n), v, basis in CONFIGS:
        row = "%-26s" % ("(%d,%d) %s %s" % (m, n, v, basis))
        tmax = tsum = 0.0
        for f in names:
            y = FUNCS[f](x)
            t0 = time.perf_counter()
            e, a, b = fit(x, y, m, n, v, basis)
            dt = time.perf_counter() - t0
            tmax = max(tmax, dt)
            tsum += dt
            Fd = basis_matrix(xd, max(m, n), basis)
            ed = max_err(torch.cat([a, b]), Fd, FUNCS[f](xd), m, v)
            if (m, n) == (5, 4) and v == "A" and basis == "power" and f in BAR and ed > BAR[f]:
                fails.append((f, ed))
            row += "%15.3e" % ed
        print(row + "   %.2f (mean %.2f)" % (tmax, tsum / len(names)), flush=True)
    if fails:
        print("QUALITY BAR FAILURES:", fails)
    else:
        print("quality bar met for (5,4) A power")


if __name__ == "__main__":
    main()
