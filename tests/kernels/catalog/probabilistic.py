"""Test declarations of the probabilistic forecast scores (kernels/probabilistic.py): the ensemble CRPS."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from kernels.spec import LossSpec
from tests.kernels.catalog.base import BOTH, Arrays, Golden, GradientCase, LossInfo
from tests.kernels.catalog.reference import Ctx, Tensor, Tensors, properscoring, scoringrules, torch
from tests.kernels.properties import REAL_CENTRAL, Domain, Floats, Line

# -- references (run by the golden generator only) -------------------------------------------------


def ref_crps(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """The energy form in torch (autograd: abs's subgradient 0 at ties), checked against properscoring (nrg)
    and scoringrules (the chosen estimator)."""
    x, y = t["predictions"], t["targets"]
    estimator = c.params.get("estimator", "nrg")
    m = x.shape[1]
    pairs = 2 * m * m if estimator == "nrg" else 2 * m * (m - 1)
    out = (x - y[:, None]).abs().mean(-1) - (x[:, :, None] - x[:, None, :]).abs().sum((-1, -2)) / pairs
    xs, ys = x.detach().numpy(), y.numpy()
    theirs = scoringrules.crps_ensemble(ys, xs, estimator=estimator, backend="numpy")
    c.check(f"scoringrules.crps_ensemble(estimator={estimator!r})", out, torch.tensor(theirs), 1e-12)
    if estimator == "nrg":
        c.check("properscoring.crps_ensemble", out, torch.tensor(properscoring.crps_ensemble(ys, xs)), 1e-12)
        c.check("scoringrules.crps_ensemble default ('qd')", out, torch.tensor(scoringrules.crps_ensemble(
            ys, xs, backend="numpy")), 1e-12)  # fmt: skip
    return out, None


# -- golden inputs ---------------------------------------------------------------------------------


def ensemble_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """(N, M) members around (N,) targets; 'extreme': tied members, a member equal to the target, a collapsed
    ensemble (all members equal), one far outlier member and large values."""
    n = shape[0]
    y = rng.normal(0.0, 3.0, n)
    x = y[:, None] + rng.normal(0.5, 1.5, shape)
    if kind == "extreme":
        x[0, 1] = x[0, 0]  # tie
        x[2, 0] = y[2]  # member at the target
        x[3] = x[3, 0]  # collapsed
        x[4, -1] = 1e4  # outlier member
        x[5] *= 1e3
        y[5] *= 1e3
    return {"predictions": x, "targets": y}


# -- finite-difference inputs ----------------------------------------------------------------------


def fd_ensembles(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Members at least 0.1 from the target and from each other (no sign change within the step)."""
    while True:
        y = rng.normal(0.0, 2.0, 4)
        x = y[:, None] + rng.normal(0.0, 2.0, (4, 5))
        gaps = np.abs(x[:, :, None] - x[:, None, :]) + np.eye(5)
        if np.all(np.abs(x - y[:, None]) > 0.1) and np.all(gaps > 0.1):
            return {"predictions": x, "targets": y}


# -- the property domain ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Ensembles(Domain):
    """An ensemble of ``members`` values against a scalar target: along one member (kinks where it crosses the
    target and each other member), all members together (a shift: the loss is then piecewise linear in it),
    spreading the ensemble about the target, and random lines (members in [-5, 5], any direction)."""

    members: int = 3

    def line(self, target: float, origin: Floats, direction: Floats) -> Line:
        # kinks: t where a member meets the target or another member
        meetings = [(target - o, v) for o, v in zip(origin.tolist(), direction.tolist(), strict=True)]
        for j in range(self.members):
            for k in range(j):
                meetings.append((float(origin[k] - origin[j]), float(direction[j] - direction[k])))
        kinks = {gap / rate for gap, rate in meetings if abs(rate) > 1e-9 and abs(gap) < 1e6 * abs(rate)}
        return Line(
            target=np.array(target),
            origin=origin,
            direction=direction,
            lo=-math.inf,
            hi=math.inf,
            central=(-REAL_CENTRAL, REAL_CENTRAL),
            kinks=tuple(sorted(kinks)),
            extremes=(-1e12, 1e12),
        )

    def canonical_lines(self) -> tuple[Line, ...]:
        m = self.members
        spread = np.linspace(-1.0, 1.0, m)
        return (
            self.line(0.0, np.zeros(m), np.eye(m)[0]),
            self.line(0.0, spread, np.eye(m)[0]),
            self.line(1.0, spread, np.ones(m) / math.sqrt(m)),
            self.line(0.5, np.full(m, 0.5), spread / np.linalg.norm(spread)),
        )

    def lines(self) -> st.SearchStrategy[Line]:
        m = self.members

        @st.composite
        def draw_line(draw: st.DrawFn) -> Line:
            origin = np.array(draw(st.lists(st.floats(-5.0, 5.0), min_size=m, max_size=m)))
            v = np.array(draw(st.lists(st.floats(-1.0, 1.0), min_size=m, max_size=m)))
            norm = float(np.linalg.norm(v))
            return self.line(draw(st.floats(-5.0, 5.0)), origin, v / norm if norm > 1e-3 else np.eye(m)[0])

        return draw_line()

    def mismatch(self, spec: LossSpec) -> str | None:
        predictions, targets = spec.inputs[0], spec.inputs[1]
        if predictions.shape != ("N", "M") or targets.shape != ("N",):
            return f"inputs {predictions.shape} and {targets.shape} are not an ensemble (N, M) and targets (N,)"
        return None


# -- declarations ----------------------------------------------------------------------------------

LOSSES = (
    LossInfo(
        "crps",
        golden=Golden(
            reference=ref_crps,
            data=ensemble_data,
            shapes={"6x5": (6, 5), "7x2": (7, 2), "6x11": (6, 11)},
            describe=lambda p: (
                f"CRPS energy form ({p.get('estimator', 'nrg')}) in torch float64, checked against "
                "scoringrules.crps_ensemble and (nrg) properscoring.crps_ensemble"
            ),
            combos=(({}, BOTH), ({"estimator": "fair"}, BOTH)),
            versions=("scoringrules", "properscoring"),
        ),
        gradients=GradientCase(fd_ensembles, ({}, {"estimator": "fair"})),
        domain=Ensembles(),
    ),
)
