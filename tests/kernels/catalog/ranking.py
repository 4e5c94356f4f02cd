"""Test declarations of the ranking and metric-learning losses (kernels/ranking.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from kernels.ranking import ContrastiveParams, MarginRankingParams, TripletParams
from tests.kernels.catalog.base import BOTH, ONE, Arrays, Golden, GradientCase, LossInfo
from tests.kernels.catalog.reference import Ctx, F, Tensor, Tensors, torch
from tests.kernels.properties import Embeddings

# -- references (run by the golden generator only) -------------------------------------------------


def ref_contrastive(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """TF-Addons contrastive_loss(y, D, margin) = y D^2 + (1 - y) max(margin - D, 0)^2 (its source formula;
    TF-Addons needs TensorFlow, not installable here), written independently in torch float64 on
    D = torch.linalg.vector_norm(x1 - x2) (whose gradient at D = 0 is 0)."""
    x1, x2, y = t["x1"], t["x2"], t["targets"]
    m = c.f("margin", 1.0)
    d = torch.linalg.vector_norm(x1 - x2, dim=-1)
    out = y * d.square() + (1 - y) * torch.clamp_min(m - d, 0).square()
    paper = (1 - (1 - y)) * 0.5 * d.square() + (1 - y) * 0.5 * torch.clamp_min(m - d, 0).square()
    c.check("Hadsell et al. 2006 with Y = 1 - targets, times 2", 2 * paper, out)
    return out.unsqueeze(-1), None


def torch_triplet_distance(p: float, eps: float) -> Callable[[Tensor, Tensor], Tensor]:
    return lambda u, v: F.pairwise_distance(u, v, p=p, eps=eps)


def ref_triplet(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    a, p, n = t["anchor"], t["positive"], t["negative"]
    margin, swap = c.f("margin", 1.0), bool(c.params.get("swap", False))
    if c.params.get("squared", False):
        out = F.triplet_margin_with_distance_loss(
            a, p, n, distance_function=lambda u, v: (u - v).pow(2).sum(-1), margin=margin, swap=swap, reduction="none"
        )
        ap, an = (a - p).pow(2).sum(-1), (a - n).pow(2).sum(-1)
        if swap:
            an = torch.minimum(an, (p - n).pow(2).sum(-1))
        c.check("FaceNet max(||a-p||^2 - ||a-n||^2 + margin, 0)", torch.clamp_min(ap - an + margin, 0), out)
        return out.unsqueeze(-1), None
    order, eps = c.f("p", 2.0), c.f("eps", 1e-6)
    out = F.triplet_margin_loss(a, p, n, margin=margin, p=order, eps=eps, swap=swap, reduction="none")
    c.check(
        "torch.nn.TripletMarginLoss(margin, p, eps, swap)(reduction='mean') = our unweighted mean",
        torch.nn.TripletMarginLoss(margin=margin, p=order, eps=eps, swap=swap)(a, p, n).reshape(1),
        out.mean().reshape(1),
    )
    d = torch_triplet_distance(order, eps)
    an = torch.minimum(d(a, n), d(p, n)) if swap else d(a, n)
    c.check("max(margin + ||a-p+eps||_p - ||a-n+eps||_p, 0)", torch.clamp_min(margin + d(a, p) - an, 0), out)
    return out.unsqueeze(-1), None


def ref_cosine_embedding(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    x1, x2, y = t["x1"], t["x2"], t["targets"]
    margin = c.f("margin", 0.0)
    out = F.cosine_embedding_loss(x1, x2, y, margin=margin, reduction="none")
    eps = float(np.float32(1e-12))  # torch's EPSILON is a float32 constant, also for float64 inputs
    cos = (x1 * x2).sum(-1) / torch.sqrt(((x1 * x1).sum(-1) + eps) * ((x2 * x2).sum(-1) + eps))
    formula = torch.where(y > 0, 1 - cos, torch.clamp_min(cos - margin, 0))
    c.check("formula with torch's float32 EPSILON 9.99999996e-13", formula, out)
    return out.unsqueeze(-1), None


def ref_margin_ranking(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    x1, x2, y = t["x1"], t["x2"], t["targets"]
    margin = c.f("margin", 0.0)
    out = F.margin_ranking_loss(x1, x2, y, margin=margin, reduction="none")
    c.check(
        "torch.nn.MarginRankingLoss(margin)(reduction='mean') = our unweighted mean",
        torch.nn.MarginRankingLoss(margin=margin)(x1, x2, y).reshape(1),
        out.mean().reshape(1),
    )
    return out.unsqueeze(-1), None


# -- golden inputs ---------------------------------------------------------------------------------


def unit_rows(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random unit vectors along the last axis (golden and finite-difference inputs)."""
    v = rng.normal(size=shape)
    rows: np.ndarray = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return rows


def contrastive_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    n, _ = shape
    margin = params.get("margin", 1.0)
    x1 = rng.normal(0.0, 1.0, shape)
    distance = rng.uniform(0.05, 2.0 * max(margin, 0.5), n)
    targets = (np.arange(n) % 2).astype(np.float64)
    rng.shuffle(targets)
    if kind == "extreme":
        # identical pairs (D = 0, where the hinge's direction is undefined) of both kinds; far pairs
        distance[:2] = 0.0
        targets[:2] = [0.0, 1.0]
        distance[2] = 1e3
        x1[3:] *= 1e3
    x2 = x1 + distance[:, None] * unit_rows(rng, shape)
    x2[distance == 0] = x1[distance == 0]
    return {"x1": x1, "x2": x2, "targets": targets}


def triplet_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    n, _ = shape
    anchor = rng.normal(0.0, 1.0, shape)
    if kind == "normalized":  # FaceNet: unit-length embeddings
        anchor = unit_rows(rng, shape)
        positive, negative = unit_rows(rng, shape), unit_rows(rng, shape)
        return {"anchor": anchor, "positive": positive, "negative": negative}
    positive = anchor + rng.uniform(0.2, 1.5, (n, 1)) * unit_rows(rng, shape)
    negative = anchor + rng.uniform(0.2, 2.5, (n, 1)) * unit_rows(rng, shape)
    if kind == "extreme":
        positive[0] = anchor[0]  # zero difference: d = ||eps||; with swap, d(a,n) = d(p,n): a tie
        negative[0] = anchor[0] + 0.3 * unit_rows(rng, (1, shape[1]))[0]  # close enough to be active
        negative[1] = anchor[1]
        scale = 1e3
        anchor[2:], positive[2:] = anchor[2:] * scale, positive[2:] * scale
        negative[2:] = negative[2:] * scale
    return {"anchor": anchor, "positive": positive, "negative": negative}


def cosine_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    n = shape[0]
    x1 = rng.normal(0.0, 1.0, shape)
    x2 = 0.6 * x1 + rng.normal(0.0, 1.0, shape) * rng.uniform(0.3, 1.5, (n, 1))
    targets = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    rng.shuffle(targets)
    if kind == "extreme":
        x1[0], x2[0] = 0.0, 0.0  # orthogonal pair, dissimilar: cos = 0 is the hinge's edge at margin 0
        x1[0, 0], x2[0, 1], targets[0] = 2.0, 3.0, -1.0
        x1[1] = 0.0  # a zero vector: cos = 0 thanks to the 1e-12 terms
        x1[2] *= 1e-7  # tiny: the 1e-12 terms matter
        x2[2] *= 1e-7
        x1[3:] *= 1e4
        targets[1:3] = [1.0, 1.0]
    return {"x1": x1, "x2": x2, "targets": targets}


def margin_ranking_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    margin = params.get("margin", 0.0)
    x2 = rng.normal(0.0, 2.0, shape)
    gap = rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 3.0, shape)
    targets = rng.choice([-1.0, 1.0], size=shape)
    x1 = x2 + gap
    if kind == "extreme":
        x1[:2] = x2[:2] + margin * targets[:2]  # loss exactly 0 at the hinge's edge (the gradient passes)
        x1[2:4] = x2[2:4] * 1e4
        x2[2:4] = -x1[2:4]
    else:  # stay off the hinge's edge
        z = margin - targets * (x1 - x2)
        x1[np.abs(z) < 0.05] += 0.2
    return {"x1": x1, "x2": x2, "targets": targets}


# -- finite-difference inputs ----------------------------------------------------------------------


def fd_contrastive(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
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


def fd_triplet(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
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


def fd_cosine_pairs(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Pairs whose cosine stays at least 0.1 from a dissimilar pair's margin."""
    margin = params.get("margin", 0.0)
    x1, x2 = rng.normal(0.0, 1.0, (2, 4, 3))
    cos = (x1 * x2).sum(-1) / np.linalg.norm(x1, axis=-1) / np.linalg.norm(x2, axis=-1)
    flip = np.abs(cos - margin) < 0.1
    x2[flip] = -x2[flip]
    return {"x1": x1, "x2": x2, "targets": np.array([1.0, -1.0, -1.0, 1.0])}


def fd_ranked_pairs(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    margin = params.get("margin", 0.0)
    targets = np.array([1.0, -1.0, 1.0, -1.0, 1.0])
    x2 = rng.normal(0.0, 1.0, 5)
    # hinge argument margin - y (x1 - x2) at +-0.3 or beyond: some active, some not
    z = np.array([0.3, -0.4, 1.2, 0.8, -1.5])
    return {"x1": x2 + (margin - z) * targets, "x2": x2, "targets": targets}


# -- declarations ----------------------------------------------------------------------------------

LOSSES = (
    LossInfo(
        "contrastive",
        golden=Golden(
            reference=ref_contrastive,
            data=contrastive_data,
            differentiable=("x1", "x2"),
            shapes={"pairs": (6, 3), "wide": (4, 8)},
            describe=lambda p: (
                "TF-Addons contrastive_loss formula y D^2 + (1-y) max(margin - D, 0)^2 on D = "
                "torch.linalg.vector_norm(x1 - x2, dim=-1), an independent float64 torch implementation (TF-Addons "
                "needs TensorFlow, which is not installable here); gradients by torch autograd (0 at D = 0)"
            ),
            combos=(
                ({}, BOTH),
                ({"margin": 2.5}, ONE),
                ({"margin": 0.0}, ONE),
            ),
        ),
        gradients=GradientCase(fd_contrastive, ({}, {"margin": 2.5})),
        domain=Embeddings(
            ("x1", "x2"), labels=(0.0, 1.0), kinks=(0.0, -ContrastiveParams().margin, ContrastiveParams().margin)
        ),
    ),
    LossInfo(
        "triplet",
        golden=Golden(
            reference=ref_triplet,
            data=triplet_data,
            differentiable=("anchor", "positive", "negative"),
            shapes={"pairs": (5, 3), "wide": (3, 8)},
            describe=lambda p: (
                "torch.nn.functional.triplet_margin_with_distance_loss(distance_function=lambda u, v: (u - "
                "v).pow(2).sum(-1), margin, swap, reduction='none')"
                if p.get("squared")
                else "torch.nn.functional.triplet_margin_loss(margin, p, eps, swap, reduction='none')"
            ),
            combos=(
                ({}, BOTH),
                ({"p": 1.0}, ONE),
                ({"p": 3.0}, ONE),
                ({"swap": True}, BOTH),
                ({"p": 1.5, "eps": 1e-3, "margin": 0.5, "swap": True}, ONE),
                ({"squared": True}, BOTH),
                ({"squared": True, "swap": True, "margin": 0.2}, ("normalized", "extreme")),
            ),
        ),
        gradients=GradientCase(
            fd_triplet,
            (
                {},
                {"p": 1.0},
                {"p": 3.0, "swap": True},
                {"p": 1.5, "eps": 1e-3, "margin": 0.5},
                {"squared": True},
                {"squared": True, "swap": True, "margin": 0.2},
            ),
        ),
        domain=Embeddings(
            ("anchor", "positive", "negative"),
            offsets=((0.0,) * 3, (TripletParams().eps,) * 3, (TripletParams().eps,) * 3),
            kinks=(0.0, -TripletParams().margin, TripletParams().margin),
        ),
    ),
    LossInfo(
        "cosine_embedding",
        golden=Golden(
            reference=ref_cosine_embedding,
            data=cosine_data,
            differentiable=("x1", "x2"),
            shapes={"pairs": (6, 3), "wide": (4, 8)},
            describe=lambda p: "torch.nn.functional.cosine_embedding_loss(margin, reduction='none')",
            combos=(
                ({}, BOTH),
                ({"margin": 0.5}, ONE),
                ({"margin": -0.3}, ONE),
            ),
        ),
        gradients=GradientCase(fd_cosine_pairs, ({}, {"margin": 0.4}, {"margin": -0.3})),
        domain=Embeddings(("x1", "x2"), labels=(-1.0, 1.0), offsets=((0.0, 1.0, 0.0), (1.0, 0.0, 0.0))),
    ),
    LossInfo(
        "margin_ranking",
        golden=Golden(
            reference=ref_margin_ranking,
            data=margin_ranking_data,
            differentiable=("x1", "x2"),
            shapes={"n6": (6,), "n9": (9,)},
            describe=lambda p: "torch.nn.functional.margin_ranking_loss(margin, reduction='none')",
            combos=(
                ({}, BOTH),
                ({"margin": 0.5}, BOTH),
                ({"margin": -0.25}, ONE),
            ),
        ),
        gradients=GradientCase(fd_ranked_pairs, ({}, {"margin": 0.5})),
        domain=Embeddings(("x1", "x2"), labels=(-1.0, 1.0), dim=0, kinks=(MarginRankingParams().margin,)),
    ),
)
