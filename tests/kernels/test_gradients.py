"""Every loss's analytic gradients against central finite differences, in float64.

For each registered loss the table below gives an input generator that keeps away from
the loss's kinks (zero residual for ``mae``, ``|residual| = delta`` for ``huber``, the
probability clip for probability inputs) and the params to try; ``from_logits`` is
tried both ways wherever the loss has it. Every combination is checked for reductions
``mean`` and ``sum`` with and without sample weights, and ``none`` (whose gradient is
that of each sample's own loss, i.e. of ``sum(per_sample)``; the service refuses
weights with ``none``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from kernels import REGISTRY
from tests.kernels.harness import evaluate

H = 1e-6
RTOL = 1e-6
ATOL = 1e-7
"""Absolute tolerance relative to the largest gradient entry (for entries near zero)."""
CONFIGS = (("mean", False), ("mean", True), ("sum", False), ("sum", True), ("none", False))

Arrays = dict[str, np.ndarray]
Generator = Callable[[np.random.Generator, dict[str, Any]], Arrays]


@dataclass(frozen=True)
class GradientCase:
    inputs: Generator
    params: tuple[dict[str, Any], ...] = field(default=({},))


def signed(rng: np.random.Generator, shape: tuple[int, ...], low: float, high: float) -> np.ndarray:
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, high, shape)


def regression(low: float, high: float, avoid: float | None = None, param: str = "delta") -> Generator:
    """Residuals with |d| in [low, high], and at least 0.15 away from ``avoid`` (the default of
    huber's delta, or of the param named by ``param``: smooth_l1's beta)."""

    def make(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
        shape = (3, 4)
        targets = rng.normal(0.0, 2.0, shape)
        residual = signed(rng, shape, low, high)
        if avoid is not None:
            delta = params.get(param, avoid)
            near = np.abs(np.abs(residual) - delta) < 0.15
            residual[near] = np.sign(residual[near]) * (delta + 0.3)
        return {"predictions": targets + residual, "targets": targets}

    return make


def msle(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Positive targets (one clamped: negative) and predictions at least 0.01 from the clamp at
    1e-7 (one below it, where the gradient is 0)."""
    shape = (3, 4)
    targets = rng.lognormal(0.0, 1.0, shape)
    targets[0, 0] = -0.5
    predictions = rng.uniform(0.01, 6.0, shape)
    predictions[1, 2] = -0.3
    return {"predictions": predictions, "targets": targets}


def mape(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Targets of both signs with |y| >= 0.2, and one at 0 (denominator eps); |residual| >= 0.1."""
    shape = (3, 4)
    targets = signed(rng, shape, 0.2, 3.0)
    targets[2, 1] = 0.0
    return {"predictions": targets + signed(rng, shape, 0.1, 2.0), "targets": targets}


def poisson(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Counts (0, 1 and non-integers included) against log-rates, or rates >= 0.1."""
    shape = (3, 2, 2)
    targets = rng.poisson(3.0, shape).astype(np.float64)
    targets[0, 0] = [0.0, 1.0]
    targets[1, 0, 0] = 2.5
    log_input = params.get("log_input", True)
    predictions = rng.normal(0.5, 1.0, shape) if log_input else rng.uniform(0.1, 6.0, shape)
    return {"predictions": predictions, "targets": targets}


def gaussian(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Variances well above eps (below it the loss is flat but torch's gradient is not: that
    straight-through gradient is checked against torch autograd by the golden values)."""
    shape = (3, 4)
    targets = rng.normal(0.0, 2.0, shape)
    return {
        "predictions": targets + rng.normal(0.0, 1.5, shape),
        "targets": targets,
        "variance": params.get("eps", 0.0) + rng.uniform(0.2, 3.0, shape),
    }


def binary(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    shape = (3, 2, 4)
    # probabilities stay far from the clip at eps
    x = rng.normal(0.0, 2.0, shape) if params.get("from_logits") else rng.uniform(0.05, 0.95, shape)
    y = rng.integers(0, 2, shape).astype(np.float64)
    y[0, 0, :2] = [0.3, 0.8]  # soft targets too
    return {"predictions": x, "targets": y}


def class_scores(rng: np.random.Generator, params: dict[str, Any], shape: tuple[int, ...]) -> np.ndarray:
    if params.get("from_logits"):
        return rng.normal(0.0, 2.0, shape)
    return rng.uniform(0.05, 1.0, shape)  # renormalised rows stay well inside the clip


def categorical(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    shape = (3, 2, 4)
    y = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
    y[0, 0] = np.eye(shape[-1])[1]
    return {"predictions": class_scores(rng, params, shape), "targets": y}


def sparse(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    shape = (3, 2, 4)
    labels = rng.integers(0, shape[-1], shape[:-1])
    labels[1, 0] = params.get("ignore_index", -100)
    labels[2, 1] = 1  # a label equal to ignore_index=1, where that is tried
    return {"predictions": class_scores(rng, params, shape), "targets": labels}


def log_probabilities(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    data = sparse(rng, {**params, "from_logits": True})
    x = data["predictions"]
    data["predictions"] = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
    data["predictions"][0, 1] += 0.7  # not normalised: any reals are accepted
    return data


def signed_labels(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Scores at least 0.1 from the margin y x = 1; labels -1, 0 and 1 (so none are converted)."""
    shape = (3, 2, 4)
    y = rng.choice([-1.0, 0.0, 1.0], size=shape)
    y[0, 0, 0] = -1.0
    x = rng.normal(0.0, 2.0, shape)
    near = np.abs(1.0 - y * x) < 0.1
    x[near] -= 0.3 * y[near]
    return {"predictions": x, "targets": y}


def one_hot_scores(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """One-hot (and one soft) targets, scores with the margin and the wrong-class maximum at least
    0.1 from their kinks (no ties; the true class's 0 in the maximum included)."""
    shape, classes = (3, 2, 4), 4
    while True:
        y = np.eye(classes)[rng.integers(0, classes, shape[:-1])]
        y[0, 0] = [0.1, 0.6, 0.3, 0.0]
        x = rng.normal(0.0, 2.0, shape)
        others = np.sort((1 - y) * x, axis=-1)
        slack = others[..., -1] - (y * x).sum(-1) + 1
        if np.all(np.abs(slack) > 0.1) and np.all(others[..., -1] - others[..., -2] > 0.1):
            return {"predictions": x, "targets": y}


def class_margins(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """(N, C) scores whose margin terms m - x_y + x_i are at least 0.1 from 0."""
    shape = (3, 4)
    labels = rng.integers(0, shape[1], shape[0])
    x = rng.normal(0.0, 1.5, shape)
    margin = params.get("margin", 1.0)
    for n, label in enumerate(labels):
        for i in range(shape[1]):
            if i != label and abs(margin - x[n, label] + x[n, i]) < 0.1:
                x[n, i] += 0.3
    return {"predictions": x, "targets": labels}


def unit_rows(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    v = rng.normal(size=shape)
    rows: np.ndarray = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return rows


def contrastive(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Pairs at distances away from 0 and from the margin (where the squared hinge's curvature jumps)."""
    shape = (4, 3)
    margin = params.get("margin", 1.0)
    distance = np.array([0.3, 0.6, 1.6, 2.2]) * margin
    x1 = rng.normal(0.0, 1.0, shape)
    return {"x1": x1, "x2": x1 + distance[:, None] * unit_rows(rng, shape), "targets": np.array([0.0, 1.0, 0.0, 1.0])}


def triplet_distance(u: np.ndarray, v: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    if params.get("squared"):
        squared: np.ndarray = ((u - v) ** 2).sum(-1)
        return squared
    order = params.get("p", 2.0)
    norm: np.ndarray = (np.abs(u - v + params.get("eps", 1e-6)) ** order).sum(-1) ** (1 / order)
    return norm


def triplet(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Triplets whose hinge argument stays at least 0.1 from 0 (and, with swap, d(a,n) away from d(p,n))."""
    shape = (4, 3)
    margin = params.get("margin", 1.0)
    while True:
        anchor = rng.normal(0.0, 1.0, shape)
        positive = anchor + rng.uniform(0.2, 1.0, (4, 1)) * unit_rows(rng, shape)
        negative = anchor + rng.uniform(0.2, 2.0, (4, 1)) * unit_rows(rng, shape)
        an, pn = triplet_distance(anchor, negative, params), triplet_distance(positive, negative, params)
        z = margin + triplet_distance(anchor, positive, params) - (np.minimum(an, pn) if params.get("swap") else an)
        if np.all(np.abs(z) > 0.1) and (z > 0).sum() >= 2 and np.all(np.abs(an - pn) > 0.05):
            return {"anchor": anchor, "positive": positive, "negative": negative}


def cosine_pairs(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Pairs whose cosine stays at least 0.1 from a dissimilar pair's margin."""
    margin = params.get("margin", 0.0)
    x1, x2 = rng.normal(0.0, 1.0, (2, 4, 3))
    cos = (x1 * x2).sum(-1) / np.linalg.norm(x1, axis=-1) / np.linalg.norm(x2, axis=-1)
    flip = np.abs(cos - margin) < 0.1
    x2[flip] = -x2[flip]
    return {"x1": x1, "x2": x2, "targets": np.array([1.0, -1.0, -1.0, 1.0])}


def ranked_pairs(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    margin = params.get("margin", 0.0)
    targets = np.array([1.0, -1.0, 1.0, -1.0, 1.0])
    x2 = rng.normal(0.0, 1.0, 5)
    # hinge argument margin - y (x1 - x2) at +-0.3 or beyond: some active, some not
    z = np.array([0.3, -0.4, 1.2, 0.8, -1.5])
    return {"x1": x2 + (margin - z) * targets, "x2": x2, "targets": targets}


def batch_scores(suffix: str) -> Generator:
    """A real batch of 3 and a fake batch of 5 scores, away from the hinge formulation's kinks at +-1."""

    def make(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
        real, fake = rng.normal(0.5, 2.0, 3), rng.normal(-0.5, 2.0, 5)
        real[np.abs(real - 1.0) < 0.1] += 0.3
        fake[np.abs(fake + 1.0) < 0.1] -= 0.3
        return {f"real_{suffix}": real, f"fake_{suffix}": fake}

    return make


def distributions(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Rows (one unnormalised) whose CDF differences stay away from 0 (the kinks of |.| for p = 1)."""
    while True:
        predictions = rng.dirichlet(np.ones(5), size=3)
        predictions[0] *= 0.6
        targets = rng.dirichlet(np.ones(5), size=3)
        gaps = np.cumsum(predictions / predictions.sum(-1, keepdims=True) - targets, axis=-1)[:, :-1]
        if np.all(np.abs(gaps) > 0.02):
            return {"predictions": predictions, "targets": targets}


def sequences(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """CTC: 3 samples, 6 frames, 4 classes; a repeated label, a shorter input, an empty target, and
    (with zero_infinity) a sample whose 3 frames cannot hold its target (4 needed)."""
    blank = params.get("blank", 0)
    x = rng.normal(0.0, 1.5, (3, 6, 4))
    if not params.get("from_logits"):
        x = x - np.log(np.exp(x).sum(axis=-1, keepdims=True)) - rng.uniform(0.0, 0.3, (3, 6, 1))
    labels = [c for c in range(4) if c != blank]
    targets = np.array([[labels[0], labels[0], labels[1]], [labels[2], labels[1], blank], [blank, blank, blank]])
    input_lengths, target_lengths = np.array([6, 4, 5]), np.array([3, 2, 0])
    if params.get("zero_infinity"):
        input_lengths[0] = 3  # needs 4: the repeat takes a blank between
    return {"predictions": x, "targets": targets, "input_lengths": input_lengths, "target_lengths": target_lengths}


def masks(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Channel-first maps (N, C, H, W): probabilities inside (0, 1), or logits; masks with soft values and a
    class absent from one sample (its loss stays smooth while sum p is far from 0)."""
    shape = (2, 3, 2, 3)
    logits = params.get("activation", "none") != "none"
    x = rng.normal(0.0, 2.0, shape) if logits else rng.uniform(0.05, 0.95, shape)
    y = (rng.random(shape) < 0.4).astype(np.float64)
    y[0, 0, 0, :2] = [0.3, 0.8]
    y[1, 2] = 0.0
    return {"predictions": x, "targets": y}


def ssim_images(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """(N, C, H, W) images in [0, data_range]: a smooth target, a noisy prediction."""
    shape = (2, 1, 11, 12)
    scale = params.get("data_range", 1.0)
    u = np.linspace(0.0, 1.0, shape[2])[:, None] + np.linspace(0.0, 0.5, shape[3])[None, :]
    target = np.clip(0.3 + 0.3 * u + rng.normal(0.0, 0.05, shape), 0.0, 1.0)
    prediction = target + rng.normal(0.0, 0.1, shape)
    return {"predictions": prediction * scale, "targets": target * scale}


CLASS_WEIGHTS = [0.5, 2.0, 1.0, 1.5]
OVERLAP: tuple[dict[str, Any], ...] = (
    {},
    {"activation": "sigmoid", "squared_pred": True},
    {"activation": "softmax", "include_background": False},
    {"activation": "softmax", "squared_pred": True, "smooth_nr": 0.5, "smooth_dr": 1.0},
    {"squared_pred": True, "include_background": False},
)

TABLE: dict[str, GradientCase] = {
    "mse": GradientCase(regression(0.0, 3.0)),
    "mae": GradientCase(regression(0.1, 3.0)),
    "huber": GradientCase(regression(0.05, 3.0, avoid=1.0), ({}, {"delta": 0.5}, {"delta": 2.0})),
    "log_cosh": GradientCase(regression(0.0, 4.0)),
    "smooth_l1": GradientCase(
        regression(0.05, 3.0, avoid=1.0, param="beta"), ({}, {"beta": 0.5}, {"beta": 2.0}, {"beta": 0.0})
    ),
    "msle": GradientCase(msle),
    "mape": GradientCase(mape),
    "poisson_nll": GradientCase(
        poisson,
        (
            {},
            {"full": True},
            {"log_input": False},
            {"log_input": False, "full": True, "eps": 1e-3},
        ),
    ),
    "gaussian_nll": GradientCase(gaussian, ({}, {"full": True}, {"eps": 0.5})),
    "quantile": GradientCase(regression(0.05, 3.0), ({}, {"quantile": 0.1}, {"quantile": 0.9})),
    "binary_cross_entropy": GradientCase(
        binary,
        ({}, {"pos_weight": 2.0, "label_smoothing": 0.1}, {"pos_weight": CLASS_WEIGHTS}),
    ),
    "cross_entropy": GradientCase(
        categorical,
        ({}, {"label_smoothing": 0.1}, {"class_weights": CLASS_WEIGHTS, "label_smoothing": 0.2}),
    ),
    "sparse_cross_entropy": GradientCase(
        sparse,
        ({}, {"class_weights": CLASS_WEIGHTS, "label_smoothing": 0.1}, {"ignore_index": 1, "label_smoothing": 0.1}),
    ),
    "focal": GradientCase(
        binary,
        ({}, {"alpha": -1.0, "gamma": 0.5}, {"gamma": 0.0, "label_smoothing": 0.1}, {"alpha": 0.7, "gamma": 3.0}),
    ),
    "label_smoothing_cross_entropy": GradientCase(
        sparse, ({}, {"class_weights": CLASS_WEIGHTS, "label_smoothing": 0.3}, {"ignore_index": 1})
    ),
    "weighted_cross_entropy": GradientCase(
        sparse,
        (
            {"class_weights": CLASS_WEIGHTS},
            {"class_weights": [0.0, 2.0, 1.0, 1.5], "label_smoothing": 0.1, "ignore_index": 1},
        ),
    ),
    "nll": GradientCase(
        log_probabilities, ({}, {"class_weights": CLASS_WEIGHTS}, {"class_weights": CLASS_WEIGHTS, "ignore_index": 1})
    ),
    "kl_divergence": GradientCase(categorical, ({}, {"eps": 1e-3})),
    "categorical_focal": GradientCase(
        categorical,
        (
            {},
            {"alpha": CLASS_WEIGHTS, "gamma": 0.5},
            {"gamma": 0.0, "label_smoothing": 0.1},
            {"alpha": 1.0, "gamma": 3.0, "label_smoothing": 0.2},
        ),
    ),
    "hinge": GradientCase(signed_labels),
    "squared_hinge": GradientCase(signed_labels),
    "categorical_hinge": GradientCase(one_hot_scores),
    "multi_margin": GradientCase(
        class_margins,
        ({}, {"p": 2}, {"margin": 0.5, "class_weights": CLASS_WEIGHTS}, {"p": 2, "class_weights": CLASS_WEIGHTS}),
    ),
    "contrastive": GradientCase(contrastive, ({}, {"margin": 2.5})),
    "triplet": GradientCase(
        triplet,
        (
            {},
            {"p": 1.0},
            {"p": 3.0, "swap": True},
            {"p": 1.5, "eps": 1e-3, "margin": 0.5},
            {"squared": True},
            {"squared": True, "swap": True, "margin": 0.2},
        ),
    ),
    "cosine_embedding": GradientCase(cosine_pairs, ({}, {"margin": 0.4}, {"margin": -0.3})),
    "margin_ranking": GradientCase(ranked_pairs, ({}, {"margin": 0.5})),
    "wasserstein": GradientCase(batch_scores("scores"), ({}, {"mode": "generator"})),
    "adversarial": GradientCase(
        batch_scores("logits"),
        tuple(
            {"formulation": formulation, "mode": mode}
            for formulation in ("non_saturating", "minimax", "hinge", "least_squares")
            for mode in ("discriminator", "generator")
        ),
    ),
    "earth_movers": GradientCase(distributions, ({}, {"p": 2})),
    "ctc": GradientCase(sequences, ({}, {"blank": 2}, {"zero_infinity": True})),
    "dice": GradientCase(masks, OVERLAP),
    "dice_bce": GradientCase(masks),
    "focal_dice": GradientCase(masks),
    "iou": GradientCase(masks, OVERLAP),
    "tversky": GradientCase(
        masks,
        (
            {},
            {"alpha": 0.3, "beta": 0.7, "activation": "sigmoid"},
            {"alpha": 0.8, "beta": 0.2, "activation": "softmax", "include_background": False},
        ),
    ),
    "ssim": GradientCase(
        ssim_images,
        ({}, {"window_size": 7, "sigma": 2.0}, {"window_size": 3, "sigma": 5.0, "data_range": 2.0, "k2": 0.1}),
    ),
}


def images(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """(N, 3, H, W) images for the default (``conv``) test extractor."""
    shape = (2, 3, 6, 5)
    return {"predictions": rng.normal(size=shape), "targets": rng.normal(size=shape)}


NO_GRADIENTS: dict[str, tuple[str, Generator]] = {
    "perceptual": (
        "the feature extractor is an arbitrary model the operator configures, with no analytic backward here",
        images,
    ),
}
"""Losses without differentiable inputs (the kernel returns no gradients): why, and valid inputs."""


def param_sets(loss: str, case: GradientCase) -> list[dict[str, Any]]:
    spec = REGISTRY.get(loss)
    assert spec is not None
    if "from_logits" not in spec.params.model_fields:
        return list(case.params)
    return [{**params, "from_logits": logits} for logits in (False, True) for params in case.params]


def scalar(loss: str, inputs: Arrays, params: dict[str, Any], reduction: str, weights: np.ndarray | None) -> float:
    """The value whose gradient the kernel returns: the loss, or sum(per_sample) for none."""
    result = evaluate(loss, inputs, params, reduction=reduction, weights=weights, gradients=False)
    return float(np.sum(result.loss))


def finite_difference(
    loss: str, inputs: Arrays, name: str, params: dict[str, Any], reduction: str, weights: np.ndarray | None
) -> np.ndarray:
    x = inputs[name]
    gradient = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        values = []
        for step in (H, -H):
            moved = x.copy()
            moved[index] += step
            values.append(scalar(loss, {**inputs, name: moved}, params, reduction, weights))
        gradient[index] = (values[0] - values[1]) / (2 * H)
    return gradient


@pytest.mark.parametrize("loss", [spec.name for spec in REGISTRY if spec.name not in NO_GRADIENTS])
def test_gradients_match_finite_differences(loss: str) -> None:
    case = TABLE.get(loss)
    if case is None:
        pytest.fail(f"{loss} has no entry in tests/kernels/test_gradients.py TABLE: add an input generator")
    spec = REGISTRY.get(loss)
    assert spec is not None and spec.differentiable, f"{loss} has no differentiable inputs: list it in NO_GRADIENTS"
    rng = np.random.default_rng(zlib.crc32(loss.encode()))
    failures = []
    for params in param_sets(loss, case):
        inputs = case.inputs(rng, params)
        count = next(iter(inputs.values())).shape[0]
        sample_weights = np.asarray(rng.uniform(0.3, 2.0, count), dtype=np.float64)
        for reduction, weighted in CONFIGS:
            if weighted and spec.batch_level:  # one value per batch: no sample weights
                continue
            weights = sample_weights if weighted else None
            result = evaluate(loss, inputs, params, reduction=reduction, weights=weights)
            for name in spec.differentiable:
                numeric = finite_difference(loss, inputs, name, params, reduction, weights)
                analytic = result.gradients[name]
                scale = float(np.max(np.abs(numeric)))
                if not np.allclose(analytic, numeric, rtol=RTOL, atol=ATOL * scale):
                    error = float(np.max(np.abs(analytic - numeric)) / scale)
                    failures.append(f"{params} {reduction} weighted={weighted} d/d{name}: max error {error:.2e}")
    assert not failures, f"{loss}: gradient != finite differences:\n" + "\n".join(failures)


def test_table_names_registered_losses() -> None:
    unknown = sorted((set(TABLE) | set(NO_GRADIENTS)) - {spec.name for spec in REGISTRY})
    assert not unknown, f"gradient table entries for unknown losses: {unknown}"
    assert not set(TABLE) & set(NO_GRADIENTS), "a loss is both in TABLE and NO_GRADIENTS"


@pytest.mark.parametrize("loss", sorted(NO_GRADIENTS))
def test_a_loss_without_gradients_says_so(loss: str) -> None:
    """Listed losses really have no differentiable inputs, and asking for gradients gives none."""
    spec = REGISTRY.get(loss)
    assert spec is not None
    assert spec.differentiable == (), f"{loss} declares differentiable inputs {spec.differentiable}: add it to TABLE"
    assert "gradient" in spec.card.summary, f"{loss}'s card summary must say why it has no gradients"
    _, make_inputs = NO_GRADIENTS[loss]
    inputs = make_inputs(np.random.default_rng(0), {})
    for reduction in ("mean", "none"):
        assert evaluate(loss, inputs, reduction=reduction, gradients=True).gradients == {}
