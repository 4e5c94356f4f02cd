"""Test declarations of the metric-learning losses (kernels/metric_learning.py)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from kernels.metric_learning import ArcFaceParams, CircleParams
from tests.kernels.catalog.base import BOTH, ONE, Arrays, Golden, GradientCase, LossInfo
from tests.kernels.catalog.reference import Ctx, F, Library, Tensor, Tensors, keras, torch
from tests.kernels.metric_domains import Cosines, EmbeddingBatch

pml: Any = Library("pytorch_metric_learning")
"""pytorch-metric-learning, imported by the golden generator only."""
VERSIONS = ("pytorch-metric-learning",)


def batch(value: Tensor) -> Tensor:
    """A batch-level loss as the (1, 1) element the kernel returns."""
    return value.reshape(1, 1)


def in_dtype(c: Ctx, value: float) -> float:
    return float(np.asarray(value, dtype=c.dtype))


# -- references (run by the golden generator only) -------------------------------------------------


def margin_logits(t: Tensors, c: Ctx, modified: Tensor) -> Tensor:
    """Cross-entropy of s * cosines with the true class's cosine replaced by ``modified``, per sample (N, 1)."""
    x, y = t["predictions"], t["targets"]
    mask = F.one_hot(y, x.shape[-1]).double()
    target = (mask * x).sum(-1)
    logits = c.f("s", 64.0) * (x + mask * (modified - target).unsqueeze(-1))
    return F.cross_entropy(logits, y, reduction="none").unsqueeze(-1)


def pml_on_cosines(loss: Any, t: Tensors) -> Tensor:
    """A pytorch-metric-learning margin-softmax loss (mean reduction) on given cosines: its get_cosine (its
    CosineSimilarity of the embeddings against its W) replaced by the identity."""
    loss.get_cosine = lambda embeddings: embeddings
    return loss(t["predictions"], t["targets"]).reshape(1)


def ref_arcface(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """pytorch-metric-learning ArcFaceLoss's target logit with the angle taken of the cosine clipped to
    [-1 + eps, 1 - eps] (its own clamp is [-1, 1], infinite gradient at 1), cross-checked against its
    modify_cosine_of_target_classes and its whole loss where no cosine is clipped."""
    x, y = t["predictions"], t["targets"]
    m, s, eps = c.f("m", 0.5), c.f("s", 64.0), c.f("eps", 1e-7)
    target = x.gather(1, y.unsqueeze(1)).squeeze(1)
    low, high = in_dtype(c, in_dtype(c, eps) - 1.0), in_dtype(c, 1.0 - in_dtype(c, eps))
    angles = torch.acos(torch.clamp(target, low, high))
    modified = torch.where(angles <= math.pi - m, torch.cos(angles + m), target - m * math.sin(m))
    out = margin_logits(t, c, modified)
    theirs = pml.losses.ArcFaceLoss(num_classes=x.shape[1], embedding_size=x.shape[1], margin=math.degrees(m), scale=s)
    inside = (target > low) & (target < high)
    c.check(
        "pytorch-metric-learning ArcFaceLoss.modify_cosine_of_target_classes where |cos| < 1 - eps",
        modified[inside],
        theirs.modify_cosine_of_target_classes(target[inside]),
    )
    if bool(inside.all()):
        c.check(
            "pytorch-metric-learning ArcFaceLoss (mean) on the cosines",
            out.mean().reshape(1),
            pml_on_cosines(theirs, t),
        )
    paper = torch.where(
        target >= -math.cos(m),
        torch.clamp(target, low, high) * math.cos(m)
        - torch.sqrt(1 - torch.clamp(target, low, high) ** 2) * math.sin(m),
        target - m * math.sin(m),
    )
    c.check("cos(theta + m) = c cos m - sqrt(1 - c^2) sin m (Deng et al. Eq. 3)", paper, modified)
    return out, None


def ref_cosface(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    x, y = t["predictions"], t["targets"]
    m, s = c.f("m", 0.35), c.f("s", 64.0)
    target = x.gather(1, y.unsqueeze(1)).squeeze(1)
    theirs = pml.losses.CosFaceLoss(num_classes=x.shape[1], embedding_size=x.shape[1], margin=m, scale=s)
    out = margin_logits(t, c, theirs.modify_cosine_of_target_classes(target))
    c.check(
        "pytorch-metric-learning CosFaceLoss (mean) on the cosines", out.mean().reshape(1), pml_on_cosines(theirs, t)
    )
    return out, None


def off_diagonal_log_softmax(u: Tensor, temperature: float) -> Tensor:
    a = u @ u.T / temperature
    eye = torch.eye(a.shape[0], dtype=torch.bool)
    return torch.log_softmax(a.masked_fill(eye, -math.inf), dim=1).masked_fill(eye, 0.0)


def ref_nt_xent(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """The exact log-softmax of SimCLR's NT-Xent (torch), checked against pytorch-metric-learning's
    SelfSupervisedLoss(NTXentLoss) (which adds finfo.tiny inside its log: invisible here)."""
    x1, x2 = t["x1"], t["x2"]
    temperature = c.f("temperature", 0.07)
    n = x1.shape[0]
    log_p = off_diagonal_log_softmax(F.normalize(torch.cat([x1, x2]), dim=1), temperature)
    partner = (torch.arange(2 * n) + n) % (2 * n)
    out = -log_p[torch.arange(2 * n), partner].mean()
    theirs = pml.losses.SelfSupervisedLoss(pml.losses.NTXentLoss(temperature=temperature), symmetric=True)
    c.check("pytorch-metric-learning SelfSupervisedLoss(NTXentLoss(temperature))(x1, x2)", out, theirs(x1, x2))
    return batch(out), None


def ref_supcon(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """pytorch-metric-learning SupConLoss(temperature), checked against Khosla et al.'s L_out averaged over the
    anchors with a positive."""
    x, y = t["embeddings"], t["labels"]
    temperature = c.f("temperature", 0.1)
    out = pml.losses.SupConLoss(temperature=temperature)(x, y)
    log_p = off_diagonal_log_softmax(F.normalize(x, dim=1), temperature)
    positives = (y.unsqueeze(0) == y.unsqueeze(1)) & ~torch.eye(len(y), dtype=torch.bool)
    count = positives.sum(1)
    anchors = count > 0
    per_anchor = -(log_p * positives).sum(1)[anchors] / count[anchors]
    c.check("Khosla et al. 2020 L_out, mean over anchors with a positive", per_anchor.mean(), out)
    return batch(out), None


def ref_circle(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """Circle loss in torch with its full gradient (Keras's circle, which does not detach the weights) on the
    L2-normalised embeddings (pytorch-metric-learning's CosineSimilarity), exact softplus; its value checked
    against pytorch-metric-learning CircleLoss (which detaches the weights and whose Softplus returns x above
    20) and Keras's circle per anchor."""
    x, y = t["embeddings"], t["labels"]
    m, gamma = c.f("m", 0.4), c.f("gamma", 80.0)
    u = F.normalize(x, dim=1)
    s = u @ u.T
    same = y.unsqueeze(0) == y.unsqueeze(1)
    positives = same & ~torch.eye(len(y), dtype=torch.bool)
    negatives = ~same
    z_p = (-gamma * torch.relu(1 + m - s) * (s - (1 - m))).masked_fill(~positives, -math.inf)
    z_n = (gamma * torch.relu(s + m) * (s - m)).masked_fill(~negatives, -math.inf)
    total = torch.logsumexp(z_p, 1) + torch.logsumexp(z_n, 1)
    valid = positives.any(1) & negatives.any(1)
    losses = torch.logaddexp(total[valid], torch.zeros_like(total[valid]))
    out = losses[losses > 0].mean() if bool((losses > 0).any()) else 0 * x.sum()
    theirs = pml.losses.CircleLoss(m=m, gamma=gamma)(x, y)
    c.check("pytorch-metric-learning CircleLoss(m, gamma) value (torch Softplus threshold 20)", out, theirs, rtol=1e-9)
    per_anchor = keras.losses.circle(y, u, gamma=gamma, margin=m)
    c.check(
        "keras.losses.circle(labels, normalised embeddings, gamma, margin) per anchor (Keras computes in float32)",
        losses,
        per_anchor[valid],
        1e-5,
    )
    return batch(out), None


def tfa_distances(x: Tensor, squared: bool) -> Tensor:
    """tfa.losses.metric_learning.pairwise_distance, transcribed."""
    sq = (x * x).sum(1, keepdim=True) + (x * x).sum(1).unsqueeze(0) - 2 * x @ x.T
    sq = torch.maximum(sq, torch.zeros_like(sq))
    error = sq <= 0.0
    d = sq if squared else torch.sqrt(sq + error.double() * 1e-16)
    d = d * (~error).double()
    return d * (1 - torch.eye(len(x), dtype=torch.float64))


def masked_minimum(data: Tensor, mask: Tensor) -> Tensor:
    """TF-Addons' _masked_minimum along dim 1 (amin/amax split a tie's gradient evenly, as TensorFlow's)."""
    top = data.amax(1, keepdim=True)
    return ((data - top) * mask).amin(1, keepdim=True) + top


def masked_maximum(data: Tensor, mask: Tensor) -> Tensor:
    bottom = data.amin(1, keepdim=True)
    return ((data - bottom) * mask).amax(1, keepdim=True) + bottom


def label_masks(y: Tensor) -> tuple[Tensor, Tensor]:
    same = (y.unsqueeze(0) == y.unsqueeze(1)).double()
    return same - torch.eye(len(y), dtype=torch.float64), 1 - same


def distance_array(x: np.ndarray, squared: bool) -> np.ndarray:
    d: np.ndarray = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return d if squared else np.sqrt(d)


def ref_triplet_hard(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """tfa.losses.triplet_hard_loss transcribed to torch (TF-Addons needs TensorFlow, not installable here),
    checked against a brute-force numpy loop over anchors."""
    x, y = t["embeddings"], t["labels"]
    margin, soft, squared = c.f("margin", 1.0), bool(c.params.get("soft")), bool(c.params.get("squared"))
    d = tfa_distances(x, squared)
    positives, negatives = label_masks(y)
    gap = masked_maximum(d, positives) - masked_minimum(d, negatives)
    out = (torch.logaddexp(gap, torch.zeros_like(gap)) if soft else torch.clamp_min(gap + margin, 0.0)).mean()
    xs, ys = x.detach().numpy(), y.numpy()
    dist = distance_array(xs, squared)
    brute = []
    for a in range(len(ys)):
        pos = [dist[a, p] for p in range(len(ys)) if p != a and ys[p] == ys[a]]
        neg = [dist[a, n] for n in range(len(ys)) if ys[n] != ys[a]]
        g = (max(pos) if pos else 0.0) - (min(neg) if neg else dist[a].max())
        brute.append(np.logaddexp(g, 0.0) if soft else max(g + margin, 0.0))
    c.check("brute force over anchors (numpy, direct differences)", out, torch.tensor(np.mean(brute)), rtol=1e-9)
    return batch(out), None


def ref_triplet_semihard(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """tfa.losses.triplet_semihard_loss transcribed to torch (the tiled N^2 x N mask, masked extrema), checked
    against a brute-force numpy loop over positive pairs."""
    x, y = t["embeddings"], t["labels"]
    margin, squared = c.f("margin", 1.0), bool(c.params.get("squared"))
    d = tfa_distances(x, squared)
    n = len(y)
    positives, negatives = label_masks(y)
    tile = d.repeat(n, 1)
    mask = negatives.bool().repeat(n, 1) & (tile > d.T.reshape(-1, 1))
    mask_final = (mask.double().sum(1, keepdim=True) > 0).reshape(n, n).T
    outside = masked_minimum(tile, mask.double()).reshape(n, n).T
    inside = masked_maximum(d, negatives).repeat(1, n)
    semi = torch.where(mask_final, outside, inside)
    loss_mat = margin + d - semi
    count = positives.sum()
    out = torch.clamp_min(loss_mat * positives, 0.0).sum() / count
    xs, ys = x.detach().numpy(), y.numpy()
    dist = distance_array(xs, squared)
    terms = []
    for a, p in itertools.permutations(range(n), 2):
        if ys[a] != ys[p]:
            continue
        neg = [dist[a, k] for k in range(n) if ys[k] != ys[a]]
        far = [v for v in neg if v > dist[a, p]]
        chosen = min(far) if far else (max(neg) if neg else 0.0)
        terms.append(max(margin + dist[a, p] - chosen, 0.0))
    c.check("brute force over positive pairs (numpy, direct differences)", out, torch.tensor(np.mean(terms)), 1e-9)
    return batch(out), None


# -- golden inputs ---------------------------------------------------------------------------------


def unit_rows(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    v = rng.normal(size=shape)
    rows: np.ndarray = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return rows


def cosines_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Cosines of unit embeddings against unit class centres, the true class's pulled closer; extreme: cosines
    of exactly 1 and -1 (the clip), within eps of 1, and past ArcFace's theta + m = pi."""
    n, classes = shape
    targets = rng.integers(0, classes, n)
    embeddings, centres = unit_rows(rng, (n, 8)), unit_rows(rng, (classes, 8))
    embeddings = embeddings + 0.8 * centres[targets]
    cosines = embeddings / np.linalg.norm(embeddings, axis=1)[:, None]
    predictions = np.clip(cosines @ centres.T, -1.0, 1.0)
    rows = np.arange(n)
    if kind == "extreme":
        predictions[0, targets[0]] = 1.0
        predictions[1, targets[1]] = -1.0
        predictions[2, targets[2]] = 1.0 - 3e-8
        predictions[3, targets[3]] = -0.97  # theta + m > pi for m = 0.5
        predictions[0, (targets[0] + 1) % classes] = 1.0  # a wrong class at cosine 1
        predictions[1, (targets[1] + 1) % classes] = -1.0
    else:  # keep true cosines off the continuation's switch at -cos m
        true = predictions[rows, targets]
        near = np.abs(true + math.cos(params.get("m", 0.5))) < 0.02
        predictions[rows[near], targets[near]] += 0.05
    return {"predictions": predictions, "targets": targets}


def labelled_batch(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Embeddings around one centre per class, two to three per class; extreme: a singleton label (an anchor
    without positives), two coincident embeddings with dyadic components (distance exactly 0 in either dtype),
    and an embedding at 1e3 times the scale."""
    n, dim = shape
    labels = np.arange(n) % max(2, n // 3)
    rng.shuffle(labels)
    centres = rng.normal(0.0, 1.0, (int(labels.max()) + 1, dim))
    embeddings = centres[labels] + rng.normal(0.0, 0.7, (n, dim))
    if kind == "extreme":
        labels[-1] = labels.max() + 1
        embeddings[0] = np.round(embeddings[0] * 4) / 4
        embeddings[1] = embeddings[0]
        labels[1] = labels[0]
        embeddings[2] *= 1e3
    return {"embeddings": embeddings, "labels": labels.astype(np.int64)}


def views_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Two noisy views of each sample; extreme: identical views, opposite views and a view at 1e4 scale."""
    x = rng.normal(0.0, 1.0, shape)
    x1 = x + rng.normal(0.0, 0.4, shape)
    x2 = x + rng.normal(0.0, 0.4, shape)
    if kind == "extreme":
        x2[0] = x1[0]
        x2[1] = -x1[1]
        x1[2] *= 1e4
    return {"x1": x1, "x2": x2}


# -- finite-difference inputs ----------------------------------------------------------------------


def fd_cosines(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Cosines inside (-0.9, 0.9), the true ones away from ArcFace's switch at -cos m; scale 8 keeps the
    softmax from saturating, so every entry of the gradient is visible."""
    m = params.get("m", 0.5)
    while True:
        predictions = rng.uniform(-0.9, 0.9, (4, 3))
        targets = rng.integers(0, 3, 4)
        if np.all(np.abs(predictions[np.arange(4), targets] + math.cos(m)) > 0.05):
            return {"predictions": predictions, "targets": targets}


def fd_batch(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Six embeddings in three classes (plus a singleton), whose mining choices and hinges stay put under the
    step: distances apart by more than 1e-3, hinge arguments off 0, circle's negatives off s = -m."""
    labels = np.array([0, 0, 1, 1, 2, 2, 3])
    while True:
        x = rng.normal(0.0, 1.0, (7, 3))
        d = distance_array(x, bool(params.get("squared")))
        gaps = np.abs(np.subtract.outer(d, d))[np.triu_indices(7, 1)]
        u = x / np.linalg.norm(x, axis=1, keepdims=True)
        s = u @ u.T
        margin = params.get("margin", 1.0)
        hinge = np.abs(np.subtract.outer(d, d).ravel() + margin)
        if gaps[gaps > 0].min() > 1e-3 and np.all(np.abs(s + params.get("m", 0.4)) > 1e-3) and hinge.min() > 1e-3:
            return {"embeddings": x, "labels": labels}


def fd_views(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    x = rng.normal(0.0, 1.0, (3, 4))
    return {"x1": x + rng.normal(0.0, 0.5, (3, 4)), "x2": x + rng.normal(0.0, 0.5, (3, 4))}


# -- declarations ----------------------------------------------------------------------------------

BATCH_SHAPES = {"n8": (8, 3), "n12": (12, 5)}
SCALED = {"float64": (1e-9, 1e-11), "float32": (2e-4, 1e-5)}
"""A float32 softmax at s = 64 (or 1 / temperature = 14) turns the inputs' rounding (6e-8) into 4e-6 relative;
the extreme batches' embedding at 1e3 scale has distances near 2000 whose float32 differences (gaps of the
soft triplet, 1e-4 absolute) reach its slope."""

LOSSES = (
    LossInfo(
        "arcface",
        golden=Golden(
            reference=ref_arcface,
            data=cosines_data,
            shapes={"c5": (6, 5), "c10": (4, 10)},
            describe=lambda p: (
                "pytorch-metric-learning ArcFaceLoss(margin=degrees(m), scale=s) on the given cosines, the angle "
                "taken of the target cosine clipped to [-1 + eps, 1 - eps]; per sample F.cross_entropy"
            ),
            combos=(({}, BOTH), ({"m": 0.3, "s": 30.0}, ONE), ({"m": 0.2, "s": 8.0, "eps": 1e-4}, ("extreme",))),
            versions=VERSIONS,
            tolerance=SCALED,
        ),
        gradients=GradientCase(fd_cosines, ({"s": 8.0}, {"s": 4.0, "m": 0.3})),
        domain=Cosines(kinks=(-math.cos(ArcFaceParams().m), 1.0 - ArcFaceParams().eps)),
    ),
    LossInfo(
        "cosface",
        golden=Golden(
            reference=ref_cosface,
            data=cosines_data,
            shapes={"c5": (6, 5), "c10": (4, 10)},
            describe=lambda p: (
                "pytorch-metric-learning CosFaceLoss(margin=m, scale=s) on the given cosines, per "
                "sample F.cross_entropy"
            ),
            combos=(({}, BOTH), ({"m": 0.2, "s": 16.0}, ONE)),
            versions=VERSIONS,
            tolerance=SCALED,
        ),
        gradients=GradientCase(fd_cosines, ({"s": 8.0}, {"s": 4.0, "m": 0.1})),
        domain=Cosines(),
    ),
    LossInfo(
        "nt_xent",
        whole="batch-level",
        golden=Golden(
            reference=ref_nt_xent,
            data=views_data,
            differentiable=("x1", "x2"),
            shapes={"n4": (4, 3), "n6": (6, 8)},
            batch_level=True,
            describe=lambda p: (
                "SimCLR NT-Xent as an exact torch log-softmax, checked against "
                "pytorch-metric-learning SelfSupervisedLoss(NTXentLoss(temperature))"
            ),
            combos=(({}, BOTH), ({"temperature": 0.5}, ONE)),
            versions=VERSIONS,
            tolerance=SCALED,
        ),
        gradients=GradientCase(fd_views, ({"temperature": 0.5}, {})),
        domain=EmbeddingBatch(("x1", "x2"), labels=None),
    ),
    LossInfo(
        "supcon",
        whole="batch-level",
        golden=Golden(
            reference=ref_supcon,
            data=labelled_batch,
            differentiable=("embeddings",),
            shapes=BATCH_SHAPES,
            batch_level=True,
            describe=lambda p: "pytorch-metric-learning SupConLoss(temperature)(embeddings, labels)",
            combos=(({}, BOTH), ({"temperature": 0.5}, ONE)),
            versions=VERSIONS,
            tolerance=SCALED,
        ),
        gradients=GradientCase(fd_batch, ({"temperature": 0.5}, {})),
        domain=EmbeddingBatch(("embeddings",)),
    ),
    LossInfo(
        "circle",
        whole="batch-level",
        golden=Golden(
            reference=ref_circle,
            data=labelled_batch,
            differentiable=("embeddings",),
            shapes=BATCH_SHAPES,
            batch_level=True,
            describe=lambda p: (
                "Circle loss in torch float64 with autograd through the weights (as Keras's "
                "circle) on F.normalize'd embeddings; value checked against pytorch-metric-learning CircleLoss(m, "
                "gamma) and keras.losses.circle"
            ),
            combos=(({}, BOTH), ({"m": 0.25, "gamma": 32.0}, ONE)),
            versions=VERSIONS,
            tolerance=SCALED,
        ),
        gradients=GradientCase(fd_batch, ({"gamma": 4.0}, {"m": 0.25, "gamma": 2.0}), rtol=1e-5, atol=1e-6),
        domain=EmbeddingBatch(("embeddings",), kink="cosine", cosine=-CircleParams().m),
    ),
    LossInfo(
        "triplet_hard",
        whole="batch-level",
        golden=Golden(
            reference=ref_triplet_hard,
            data=labelled_batch,
            differentiable=("embeddings",),
            shapes=BATCH_SHAPES,
            batch_level=True,
            describe=lambda p: (
                "tfa.losses.triplet_hard_loss transcribed to torch float64 (TF-Addons needs "
                "TensorFlow, which is not installable here), gradients by torch autograd"
            ),
            combos=(
                ({}, BOTH),
                ({"soft": True}, BOTH),
                ({"squared": True, "margin": 0.5}, BOTH),
                ({"soft": True, "squared": True}, ONE),
            ),
            tolerance=SCALED,
        ),
        gradients=GradientCase(fd_batch, ({}, {"soft": True}, {"squared": True, "margin": 0.5})),
        domain=EmbeddingBatch(("embeddings",), floor=0.0, kink="mining"),
    ),
    LossInfo(
        "triplet_semihard",
        whole="batch-level",
        golden=Golden(
            reference=ref_triplet_semihard,
            data=labelled_batch,
            differentiable=("embeddings",),
            shapes=BATCH_SHAPES,
            batch_level=True,
            describe=lambda p: (
                "tfa.losses.triplet_semihard_loss transcribed to torch float64 (TF-Addons needs "
                "TensorFlow, which is not installable here), gradients by torch autograd"
            ),
            combos=(({}, BOTH), ({"squared": True, "margin": 0.2}, BOTH), ({"margin": 3.0}, ONE)),
            tolerance=SCALED,
        ),
        gradients=GradientCase(fd_batch, ({}, {"squared": True, "margin": 0.2})),
        domain=EmbeddingBatch(("embeddings",), floor=0.0, kink="mining"),
    ),
)
