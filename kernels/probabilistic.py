"""Probabilistic forecast scores: the continuous ranked probability score (CRPS) of an ensemble.

The ensemble's CRPS is the energy form ``E|X - y| - E|X - X'| / 2`` over the members: ``(N, M)``
predictions (M members per sample) against ``(N,)`` targets. The pairwise term is computed over
every pair of members, ``(N, M, M)``, so its cost grows as M^2 per sample (50 members: 2,500 pairs).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from onnxscript import opset18 as op
from onnxscript import script
from pydantic import Field

from kernels.curves import Arrays, Curve
from kernels.ops import LOSSD
from kernels.spec import Card, Input, KernelFunction, MinSize, Params, Properties, loss


class CrpsParams(Params):
    estimator: Literal["nrg", "fair"] = Field(
        "nrg",
        description="nrg: the CRPS of the ensemble's empirical distribution, pairs averaged over M^2 (properscoring, "
        "scoringrules' default); fair: pairs averaged over M (M - 1), unbiased for the CRPS of the distribution the "
        "members are drawn from (scoringrules 'fair', equal to its 'pwm'); needs M >= 2.",
    )


@script(LOSSD, default_opset=op)
def crps_terms(predictions, targets):  # type: ignore[no-untyped-def]
    """E|X - y| per sample (N, 1) and its gradient; sum_jk |x_j - x_k| (N, 1) and its gradient (N, M);
    the member count M."""
    members = op.CastLike(op.Shape(predictions, start=1, end=2), predictions)
    y = op.Unsqueeze(targets, op.Constant(value_ints=[1]))
    axis = op.Constant(value_ints=[-1])
    error = op.ReduceSum(op.Abs(predictions - y), axis, keepdims=1) / members
    d_error = op.Sign(predictions - y) / members
    # (N, M, M) differences; sign(0) = 0 at ties, the subgradient torch's abs gives
    gaps = op.Unsqueeze(predictions, op.Constant(value_ints=[2])) - op.Unsqueeze(
        predictions, op.Constant(value_ints=[1])
    )
    spread = op.ReduceSum(op.Abs(gaps), op.Constant(value_ints=[1, 2]), keepdims=0)
    d_spread = 2.0 * op.ReduceSum(op.Sign(gaps), op.Constant(value_ints=[2]), keepdims=0)
    return error, d_error, op.Unsqueeze(spread, op.Constant(value_ints=[1])), d_spread, members


@script(LOSSD, default_opset=op)
def crps_nrg(predictions, targets):  # type: ignore[no-untyped-def]
    error, d_error, spread, d_spread, members = crps_terms(predictions, targets)
    pairs = 2.0 * members * members
    return error - spread / pairs, d_error - d_spread / pairs


@script(LOSSD, default_opset=op)
def crps_fair(predictions, targets):  # type: ignore[no-untyped-def]
    error, d_error, spread, d_spread, members = crps_terms(predictions, targets)
    pairs = 2.0 * members * (members - 1.0)
    return error - spread / pairs, d_error - d_spread / pairs


def ensemble_offset(members: int = 5) -> Curve:
    """An ensemble spread evenly over [x - 0.5, x + 0.5] against a target of 0."""
    spread = np.linspace(-0.5, 0.5, members)

    def inputs(x: np.ndarray) -> Arrays:
        return {"predictions": x[:, None] + spread, "targets": np.zeros(x.size)}

    def direction(x: np.ndarray) -> Arrays:
        return {"predictions": np.ones((x.size, members))}

    return Curve("ensemble centre (members spread over 1, target 0)", -3.0, 3.0, inputs, direction)


@loss(
    name="crps",
    aliases=("continuous_ranked_probability_score",),
    task="regression",
    curve=ensemble_offset(),
    inputs=(
        Input(
            "predictions",
            ("N", "M"),
            "real",
            "Ensemble forecasts: M members (samples of the predictive distribution) per sample.",
            differentiable=True,
        ),
        Input("targets", ("N",), "real", "The observed value of each sample."),
    ),
    params=CrpsParams,
    min_sizes=(
        MinSize("M", 2, "predictions", "the fair estimator needs at least 2 members", when=(("estimator", "fair"),)),
    ),
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=False,
        convex=False,
        differentiable=False,
        bounded_below=True,
        probabilistic_interpretation="A strictly proper scoring rule: its expectation is minimised by forecasting "
        "the true distribution of the target; for one member it is the absolute error.",
    ),
    card=Card(
        title="Continuous ranked probability score (ensemble)",
        summary="The CRPS of an ensemble forecast: the mean absolute error of the members minus half their mean "
        "absolute difference, which rewards an ensemble that is both close to the observation (sharp) and as "
        "spread as its errors (calibrated). Default estimator nrg, the energy form of the CRPS of the "
        "ensemble's empirical distribution (pairs averaged over M^2): properscoring.crps_ensemble and "
        "scoringrules.crps_ensemble (its default 'qd', and 'nrg', 'int' give the same value). estimator fair "
        "averages the pairs over M (M - 1) (scoringrules 'fair' = 'pwm'): unbiased for the distribution the "
        "members are drawn from, and can be slightly negative. Properties (nrg): at least 0, not convex in the "
        "members (a member passing another one bends the spread term the concave way), gradient bounded by 2/M "
        "per member with jumps where a member crosses the target or another member (subgradient 0 at a tie, as "
        "torch's abs). Cost O(M^2) per sample.",
        formula=r"\mathrm{CRPS} = \frac{1}{M}\sum_j |x_j - y| - \frac{1}{2 M^2}\sum_{j,k} |x_j - x_k|"
        r"\quad(\text{fair: } \tfrac{1}{2 M (M - 1)})",
        use_cases=(
            "Training and evaluating ensemble or sample-based probabilistic forecasts (weather, energy, demand)",
            "A distribution-aware alternative to MAE for generative regression models",
        ),
        equivalents={
            "properscoring": "properscoring.crps_ensemble(observations, forecasts) (nrg)",
            "scoringrules": "scoringrules.crps_ensemble(obs, fct, estimator='nrg' | 'fair')",
            "torch": "none in torch core",
        },
        references=(
            "Matheson, J. E., Winkler, R. L. (1976). Scoring rules for continuous probability distributions. "
            "Management Science.",
            "Gneiting, T., Raftery, A. E. (2007). Strictly proper scoring rules, prediction, and estimation. JASA.",
            "Ferro, C. A. T. (2014). Fair scores for ensemble forecasts. QJRMS.",
        ),
    ),
)
def crps(estimator: Literal["nrg", "fair"]) -> KernelFunction:
    return crps_fair if estimator == "fair" else crps_nrg
