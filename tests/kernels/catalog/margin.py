"""Test declarations of the margin losses (kernels/margin.py): the hinge family."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from hypothesis import strategies as st

from kernels.margin import HingeEmbeddingParams, MultiMarginParams
from tests.kernels.catalog.base import BOTH, ELEMENT_SHAPES, ONE, Arrays, Golden, GradientCase, LossInfo
from tests.kernels.catalog.classification import CLASS_WEIGHTS
from tests.kernels.catalog.reference import Ctx, F, Tensor, Tensors, keras, torch
from tests.kernels.properties import ClassScores, Line, SignedTargets

# -- references (run by the golden generator only) -------------------------------------------------


def keras_hinge_labels(y: Tensor) -> Tensor:
    """keras convert_binary_labels_to_hinge: 2y-1 only if every label is 0 or 1."""
    return 2 * y - 1 if bool(((y == 0) | (y == 1)).all()) else y


def ref_hinge(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    x, y = t["predictions"], t["targets"]
    out = F.relu(1 - keras_hinge_labels(y) * x)
    c.check(
        "keras.losses.hinge (computes in float32 on the torch backend)", out.mean(-1), keras.losses.hinge(y, x), 1e-6
    )
    return out, None


def ref_squared_hinge(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    x, y = t["predictions"], t["targets"]
    out = F.relu(1 - keras_hinge_labels(y) * x) ** 2
    c.check(
        "keras.losses.squared_hinge (computes in float32 on the torch backend)",
        out.mean(-1),
        keras.losses.squared_hinge(y, x),
        1e-6,
    )
    return out, None


def ref_categorical_hinge(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    x, y = t["predictions"], t["targets"]
    pos = (y * x).sum(-1)
    neg = ((1 - y) * x).max(-1).values
    out = F.relu(neg - pos + 1)
    c.check(
        "keras.losses.categorical_hinge (computes in float32 on the torch backend)",
        out,
        keras.losses.categorical_hinge(y, x),
        1e-6,
    )
    return out, None


def ref_multi_margin(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    x, labels = t["predictions"], t["targets"]
    w = c.f("class_weights")
    weight = None if w is None else torch.tensor(w, dtype=torch.float64)
    p, margin = int(c.params.get("p", 1)), c.f("margin", 1.0)
    out = F.multi_margin_loss(x, labels, p=p, margin=margin, weight=weight, reduction="none")
    c.check(
        "torch multi_margin_loss(reduction='mean') = plain mean over samples (not divided by the class weights)",
        F.multi_margin_loss(x, labels, p=p, margin=margin, weight=weight).reshape(1),
        out.mean().reshape(1),
    )
    return out, None


def ref_soft_margin(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """softplus(-y x): torch's soft_margin_loss computes log(1 + exp(-y x)) as written, which overflows to inf
    for -y x beyond ~88 (float32) / ~709 (float64); it is checked where it is finite."""
    x, y = t["predictions"], t["targets"]
    out = F.softplus(-y * x)
    theirs = F.soft_margin_loss(x, y, reduction="none")
    finite = torch.isfinite(theirs)
    c.check("torch soft_margin_loss(reduction='none') where finite", out[finite], theirs[finite])
    return out, None


def ref_hinge_embedding(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    x, y = t["predictions"], t["targets"]
    margin = c.f("margin", 1.0)
    out = F.hinge_embedding_loss(x, y, margin=margin, reduction="none")
    c.check("torch hinge_embedding_loss(reduction='mean') = mean over every element",
            F.hinge_embedding_loss(x, y, margin=margin).reshape(1), out.mean().reshape(1))  # fmt: skip
    return out, None


def ref_multilabel_soft_margin(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """torch's per-sample loss is the class mean; the element losses are its C terms (their mean is it)."""
    x, y = t["predictions"], t["targets"]
    w = c.f("class_weights")
    weight = None if w is None else torch.tensor(w, dtype=torch.float64)
    out = -(y * F.logsigmoid(x) + (1 - y) * F.logsigmoid(-x)) * (1.0 if weight is None else weight)
    c.check("torch multilabel_soft_margin_loss(reduction='none') = mean of the class terms",
            F.multilabel_soft_margin_loss(x, y, weight=weight, reduction="none"), out.mean(-1))  # fmt: skip
    return out, None


# -- golden inputs ---------------------------------------------------------------------------------


def signed_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Hinge: -1/1 labels; 0/1 labels (Keras converts them); mixed -1/0/1 (left unchanged); and
    scores exactly at the margin y x = 1 and far beyond it."""
    x = rng.normal(0.0, 2.0, shape)
    if kind == "binary":
        return {"predictions": x, "targets": rng.integers(0, 2, shape).astype(np.float64)}
    if kind == "mixed":
        y = rng.choice([-1.0, 0.0, 1.0], size=shape)
        y.reshape(-1)[:3] = [-1.0, 0.0, 1.0]
        return {"predictions": x, "targets": y}
    y = rng.choice([-1.0, 1.0], size=shape)
    if kind == "margin":
        picks = rng.random(shape)
        x = np.where(picks < 0.3, y, x)  # y x = 1 exactly: the kink
        x = np.where(picks > 0.85, rng.choice([-1e3, 1e3], size=shape), x)
    return {"predictions": x, "targets": y}


def one_hot_scores_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Categorical hinge: one-hot (or soft) targets; 'floor': every other score negative, so Keras's
    max is the true class's 0; 'margin': the loss exactly at its kink (max other - true + 1 = 0)."""
    classes = shape[-1]
    rows = int(np.prod(shape[:-1]))
    labels = rng.integers(0, classes, rows)
    y = np.eye(classes)[labels]
    x = rng.normal(0.0, 2.0, (rows, classes))
    if kind == "soft":
        y = rng.dirichlet(np.ones(classes), size=rows)
    elif kind == "floor":
        x = -np.abs(x) - 0.1
        x[np.arange(rows), labels] = rng.uniform(-1.0, 2.0, rows)
    elif kind == "margin":
        x = rng.choice([-1.0, -0.5, 0.5], size=(rows, classes))
        x[np.arange(rows), labels] = 1.5  # others' max 0.5 (or the floor 0) -> slack 0 (or -0.5)
        x[0, (labels[0] + 1) % classes] = 0.5
    return {"predictions": x.reshape(shape), "targets": y.reshape(shape)}


def margin_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """multi_margin: (N, C) scores and labels; 'extreme': large scores and terms exactly at the
    kink (x_i - x_y = -margin)."""
    classes = shape[-1]
    labels = rng.integers(0, classes, shape[0])
    x = rng.normal(0.0, 1.5, shape)
    if kind == "extreme":
        margin = params.get("margin", 1.0)
        x = rng.choice([-1e3, 1e3, 0.0, 0.25], size=shape)
        x[np.arange(shape[0]), labels] = rng.choice([0.0, 1e3], size=shape[0])
        x[0, (labels[0] + 1) % classes] = x[0, labels[0]] - margin
    return {"predictions": x, "targets": labels}


def strict_signed_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """-1/1 labels; 'margin': scores at the margin (x = margin, y x = 1) and far out (+-1e3)."""
    x = rng.normal(0.0, 2.0, shape)
    y = rng.choice([-1.0, 1.0], size=shape)
    if kind == "margin":
        picks = rng.random(shape)
        x = np.where(picks < 0.3, params.get("margin", 1.0) * np.ones(shape), x)
        x = np.where(picks > 0.85, rng.choice([-1e3, 1e3], size=shape), x)
    return {"predictions": x, "targets": y}


def multilabel_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """(N, C) logits and 0/1 labels; 'extreme': saturated logits (+-50, +-800) on both labels, and soft labels."""
    x = rng.normal(0.0, 2.0, shape)
    y = rng.integers(0, 2, shape).astype(np.float64)
    if kind == "extreme":
        x = np.where(rng.random(shape) < 0.5, rng.choice([-800.0, -50.0, 50.0, 800.0], size=shape), x)
        y[0] = rng.uniform(0.0, 1.0, shape[1])
    return {"predictions": x, "targets": y}


# -- finite-difference inputs ----------------------------------------------------------------------


def fd_signed_labels(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Scores at least 0.1 from the margin y x = 1; labels -1, 0 and 1 (so none are converted)."""
    shape = (3, 2, 4)
    y = rng.choice([-1.0, 0.0, 1.0], size=shape)
    y[0, 0, 0] = -1.0
    x = rng.normal(0.0, 2.0, shape)
    near = np.abs(1.0 - y * x) < 0.1
    x[near] -= 0.3 * y[near]
    return {"predictions": x, "targets": y}


def fd_one_hot_scores(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
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


def fd_class_margins(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
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


def fd_strict_signed(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """-1/1 labels, scores at least 0.1 from the margin (x = margin for hinge_embedding)."""
    shape = (3, 2, 4)
    y = rng.choice([-1.0, 1.0], size=shape)
    x = rng.normal(0.0, 2.0, shape)
    margin = params.get("margin", 1.0)
    x[np.abs(x - margin) < 0.1] += 0.3
    return {"predictions": x, "targets": y}


def fd_multilabel(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    shape = (4, 3)
    y = rng.integers(0, 2, shape).astype(np.float64)
    y[0] = [0.2, 0.7, 1.0]
    return {"predictions": rng.normal(0.0, 2.0, shape), "targets": y}


@dataclass(frozen=True)
class Distances(SignedTargets):
    """hinge_embedding: the score x = t on the real line for a label 1 (the loss x) or -1 (max(0, margin - x),
    its kink at x = margin)."""

    margin: float = 1.0

    def line(self, y: float) -> Line:
        return replace(super().line(y), kinks=(self.margin,) if y < 0 else ())


@dataclass(frozen=True)
class Logits(ClassScores):
    """multilabel_soft_margin: :class:`ClassScores` lines whose direction's components are 0 or at least 0.3 in
    magnitude. The bounded-below check recognises a loss approaching its bound by a descent that slows down over
    the ladder's decades; a component of 1e-4 would put the whole softplus descent of its class into the last
    decades (t = 1e4..1e6), which reads as a loss that keeps falling although each term is above 0."""

    def lines(self) -> st.SearchStrategy[Line]:
        c = self.classes

        @st.composite
        def draw_line(draw: st.DrawFn) -> Line:
            origin = np.array(draw(st.lists(st.floats(-3.0, 3.0), min_size=c, max_size=c)))
            target = np.array(draw(st.lists(st.sampled_from([0.0, 1.0, 0.3]), min_size=c, max_size=c)))
            part = st.one_of(st.just(0.0), st.floats(0.3, 1.0), st.floats(-1.0, -0.3))
            v = np.array(draw(st.lists(part, min_size=c, max_size=c)))
            norm = float(np.linalg.norm(v))
            return self.line(target, origin, v / norm if norm > 0 else np.eye(c)[0])

        return draw_line()


# -- declarations ----------------------------------------------------------------------------------

HINGES = (
    LossInfo(
        "hinge",
        whole="not row-wise: the label rule looks at the whole batch",
        golden=Golden(
            reference=ref_hinge,
            shapes=ELEMENT_SHAPES,
            data=signed_data,
            describe=lambda p: (
                "keras.losses.hinge formula relu(1 - y x) in torch float64, labels 2y-1 only when every label is 0 "
                "or 1 (Keras's rule); relu's subgradient 0 at the margin; checked against Keras (which computes in "
                "float32 on the torch backend)"
            ),
            combos=(({}, ("random", "binary", "mixed", "margin")),),
        ),
        gradients=GradientCase(fd_signed_labels),
        domain=SignedTargets(),
    ),
    LossInfo(
        "squared_hinge",
        whole="not row-wise: the label rule looks at the whole batch",
        golden=Golden(
            reference=ref_squared_hinge,
            shapes=ELEMENT_SHAPES,
            data=signed_data,
            describe=lambda p: (
                "keras.losses.squared_hinge formula relu(1 - y x)^2 in torch float64, labels 2y-1 only when every "
                "label is 0 or 1 (Keras's rule); checked against Keras (float32 on the torch backend)"
            ),
            combos=(({}, ("random", "binary", "mixed", "margin")),),
        ),
        gradients=GradientCase(fd_signed_labels),
        domain=SignedTargets(),
    ),
    LossInfo(
        "categorical_hinge",
        golden=Golden(
            reference=ref_categorical_hinge,
            data=one_hot_scores_data,
            describe=lambda p: (
                "keras.losses.categorical_hinge formula relu(max((1-y) x) - sum(y x) + 1) in torch float64 (max's "
                "gradient to its index, relu's 0 at the margin); checked against Keras (float32 on the torch backend)"
            ),
            combos=(({}, ("random", "soft", "floor", "margin")),),
        ),
        gradients=GradientCase(fd_one_hot_scores),
        # margin 1 against other scores of 0: the true class's kink at 1, a wrong class's at 0 (the floor of
        # Keras's max)
        domain=ClassScores(kinks=(0.0, 1.0)),
    ),
    LossInfo(
        "multi_margin",
        golden=Golden(
            reference=ref_multi_margin,
            data=margin_data,
            shapes=("2d", "2d-wide"),
            describe=lambda p: "torch.nn.functional.multi_margin_loss(p, margin, weight, reduction='none')",
            combos=(
                ({}, BOTH),
                ({"p": 2}, BOTH),
                ({"margin": 0.5, "class_weights": "per_class"}, BOTH),
                ({"p": 2, "margin": 2.0, "class_weights": "per_class_with_zero"}, BOTH),
            ),
        ),
        gradients=GradientCase(
            fd_class_margins,
            ({}, {"p": 2}, {"margin": 0.5, "class_weights": CLASS_WEIGHTS}, {"p": 2, "class_weights": CLASS_WEIGHTS}),
        ),
        # margin 1 against other scores of 0: the true class's kink at 1, a wrong class's at -1 (its own margin term)
        domain=ClassScores(kinks=(-MultiMarginParams().margin, MultiMarginParams().margin), labels=True),
    ),
)

LOSSES = (
    *HINGES,
    LossInfo(
        "soft_margin",
        golden=Golden(
            reference=ref_soft_margin,
            shapes=ELEMENT_SHAPES,
            data=strict_signed_data,
            describe=lambda p: "torch.nn.functional.soft_margin_loss(reduction='none')",
            combos=(({}, ("random", "margin")),),
        ),
        gradients=GradientCase(fd_strict_signed),
        domain=SignedTargets(),
    ),
    LossInfo(
        "hinge_embedding",
        golden=Golden(
            reference=ref_hinge_embedding,
            shapes=ELEMENT_SHAPES,
            data=strict_signed_data,
            describe=lambda p: (
                "torch.nn.functional.hinge_embedding_loss(margin, reduction='none'); at x = margin "
                "torch's clamp_min passes the gradient (-1)"
            ),
            combos=(({}, ("random", "margin")), ({"margin": 2.5}, ("random", "margin")), ({"margin": -0.5}, ONE)),
        ),
        gradients=GradientCase(fd_strict_signed, ({}, {"margin": 2.5})),
        domain=Distances(margin=HingeEmbeddingParams().margin),
    ),
    LossInfo(
        "multilabel_soft_margin",
        golden=Golden(
            reference=ref_multilabel_soft_margin,
            shapes=("2d", "2d-wide"),
            data=multilabel_data,
            describe=lambda p: (
                "torch.nn.functional.multilabel_soft_margin_loss(weight, reduction='none') (per "
                "sample: the mean of its C class terms)"
            ),
            combos=(({}, BOTH), ({"class_weights": "per_class_with_zero"}, BOTH)),
        ),
        gradients=GradientCase(fd_multilabel, ({}, {"class_weights": [0.5, 2.0, 1.0]})),
        domain=Logits(kinks=()),
    ),
)
