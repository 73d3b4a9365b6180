"""Ordinary differential equations dy/dt = f(t, y) on a tuple of tensors, solved from t0 to t1 (either way):
fixed-step Euler and Heun, and the adaptive Dormand-Prince 5(4) pair (Dormand & Prince 1980; ``dopri5`` of
torchdiffeq and scipy's RK45), apart from any network (as the diffusion samplers are). The divergence of a vector
field, exact or by Hutchinson's estimator, is here too: the instantaneous change of variables (Chen et al. 2018,
eq. 4) integrates it along a solution.
"""

from __future__ import annotations

import torch

ODE_SOLVERS = ("euler", "heun", "adaptive")

# Dormand-Prince 5(4): the nodes c, the stages' weights a, the fifth-order weights (also the last stage, "first
# same as last") and the fourth-order ones whose difference estimates the local error.
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = ((), (1 / 5,), (3 / 40, 9 / 40), (44 / 45, -56 / 15, 32 / 9),
      (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
      (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
      (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84))
_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)


def _axpy(y: tuple, h: float, ks: list, weights) -> tuple:
    """y + h sum_i w_i k_i, elementwise over the tuple's tensors."""
    out = []
    for j, yj in enumerate(y):
        acc = yj
        for w, k in zip(weights, ks):
            if w:
                acc = acc + (h * w) * k[j]
        out.append(acc)
    return tuple(out)


def time_grid(t0: float, t1: float, steps: int, power: float = 1.0) -> list[float]:
    """The steps + 1 nodes of a fixed-step solve from t0 to t1, crowded near the lower end min(t0, t1) for
    power > 1: its distance from the lower end is |t1 - t0| u^power, u uniform on [0, 1] (power 1: equal steps).
    A flow's field changes fastest near its data end (t = 0), where equal steps waste the few a budget allows."""
    low, span = min(t0, t1), abs(t1 - t0)
    u = [i / steps for i in range(steps + 1)]
    if t0 > t1:
        u = [1 - v for v in u]  # from the upper end down: the nodes' distances from the lower end shrink
    grid = [low + span * v ** power for v in u]
    grid[0], grid[-1] = t0, t1
    return grid


def integrate(f, y0: tuple, t0: float, t1: float, solver: str = "heun", steps: int = 32,
              tolerance: float = 1e-5, max_evaluations: int = 100_000, progress=None,
              power: float = 1.0) -> tuple[tuple, int]:
    """Solve dy/dt = f(t, y) from y(t0) = y0 to t1: (y(t1), the number of evaluations of f).

    f: (t float, tuple of tensors) -> tuple of tensors of the same shapes. ``solver``: euler (one evaluation a
    step, first order), heun (the explicit trapezoid, two a step, second order) with ``steps`` steps on
    :func:`time_grid` (equal for ``power`` 1, crowded near the lower end of [t0, t1] above), or adaptive
    (Dormand-Prince 5(4), six a step, its step sizes chosen so that the estimated local error stays
    within ``tolerance`` relative and absolute, in the root mean square of each image's entries, the worst image
    of the batch deciding). ``progress``: called with the share of [t0, t1] done."""
    if solver not in ODE_SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(ODE_SOLVERS)}, got {solver!r}")
    if solver == "adaptive":
        return _adaptive(f, y0, t0, t1, tolerance, max_evaluations, progress)
    grid, y, evaluations = time_grid(t0, t1, steps, power), y0, 0
    for i in range(steps):
        t, h = grid[i], grid[i + 1] - grid[i]
        k1 = f(t, y)
        if solver == "euler":
            y, evaluations = _axpy(y, h, [k1], (1.0,)), evaluations + 1
        else:
            k2 = f(t + h, _axpy(y, h, [k1], (1.0,)))
            y, evaluations = _axpy(y, h, [k1, k2], (0.5, 0.5)), evaluations + 2
        if progress is not None:
            progress((i + 1) / steps)
    return y, evaluations


def _error_ratio(error: tuple, y0: tuple, y1: tuple, tolerance: float) -> float:
    """The worst image's root-mean-square of error / (tolerance (1 + max(|y0|, |y1|))) over its entries."""
    squares, count = 0.0, 0
    for e, a, b in zip(error, y0, y1):
        scale = tolerance * (1 + torch.maximum(a.abs(), b.abs()))
        r = (e / scale).reshape(e.shape[0], -1) if e.dim() else (e / scale).reshape(1, 1)
        squares, count = squares + r.pow(2).sum(1), count + r.shape[1]
    return float((squares / count).sqrt().max())


def _adaptive(f, y0, t0, t1, tolerance, max_evaluations, progress):
    span = t1 - t0
    t, y, h = t0, y0, span / 16  # a first step of 1/16 of the interval; the error control resizes it at once
    k1, evaluations = f(t, y), 1
    while (t1 - t) * span > 1e-12 * abs(span):
        h = min(abs(h), abs(t1 - t)) * (1 if span > 0 else -1)
        ks = [k1]
        for i in range(1, 7):
            ks.append(f(t + _C[i] * h, _axpy(y, h, ks, _A[i])))
        evaluations += 6
        y_new = _axpy(y, h, ks, _B5)
        error = tuple(sum((h * (b5 - b4)) * k[j] for b5, b4, k in zip(_B5, _B4, ks)) for j in range(len(y)))
        ratio = _error_ratio(error, y, y_new, tolerance)
        if ratio <= 1:  # accepted; the seventh stage is f at the new point ("first same as last")
            t, y, k1 = t + h, y_new, ks[6]
            if progress is not None:
                progress((t - t0) / span)
        if evaluations > max_evaluations:
            raise RuntimeError(f"the adaptive solver took over {max_evaluations} evaluations (tolerance {tolerance} "
                               "too tight for this field?)")
        h = h * min(10.0, max(0.2, 0.9 * (ratio if ratio > 0 else 1e-10) ** -0.2))
    return y, evaluations


def rademacher(shape, generator: torch.Generator | None, dtype) -> torch.Tensor:
    """Entries +1 or -1 with probability 1/2 each (Hutchinson's probe: E[e e^T] = I), on the CPU."""
    return torch.randint(0, 2, shape, generator=generator).to(dtype) * 2 - 1


def hutchinson_divergence(v: torch.Tensor, z: torch.Tensor, probe: torch.Tensor) -> torch.Tensor:
    """e^T (dv/dz) e per example [B], an unbiased estimate of the divergence tr(dv/dz) for a probe e with
    E[e e^T] = I (Hutchinson 1990): one vector-Jacobian product. v = field(z), both [B, ...] with z requiring
    grad; the graph is kept (the caller may need it no further)."""
    (vjp,) = torch.autograd.grad(v, z, probe, retain_graph=False)
    return (vjp * probe).flatten(1).sum(1)


def exact_divergence(field, z: torch.Tensor) -> torch.Tensor:
    """tr(dv/dz) per example [B] of a field acting on each example alone (v_b depends on z_b only): the D diagonal
    entries from one pass over D copies of the batch, copy d backpropagating the unit vector of entry d.
    z: [B, ...] -> [B]; D passes' worth of work, for small D."""
    B, D = z.shape[0], z[0].numel()
    copies = z.detach().unsqueeze(0).expand(D, *z.shape).reshape(D * B, *z.shape[1:]).requires_grad_(True)
    v = field(copies).reshape(D, B, D)
    unit = torch.eye(D, dtype=v.dtype, device=v.device)[:, None, :].expand(D, B, D)  # copy d: e_d
    (g,) = torch.autograd.grad(v, copies, unit)
    return g.reshape(D, B, D).diagonal(dim1=0, dim2=2).sum(1)  # sum_d dv_d/dz_d of copy d
