"""Test declarations of the generative losses (kernels/generative.py): WGAN, GAN, earth mover's distance."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.kernels.catalog.base import BOTH, Arrays, FdData, Golden, GoldenData, GradientCase, LossInfo
from tests.kernels.catalog.reference import Ctx, F, Tensor, Tensors, scipy, torch
from tests.kernels.properties import BatchScores, Bins

WEIGHTED = ("random", "extreme", "weighted")
"""Data kinds of the GAN goldens: ``weighted`` adds TF-GAN's per-score weights (real_weights, fake_weights)."""

# -- references (run by the golden generator only) -------------------------------------------------


def batch(value: Tensor) -> Tensor:
    """A batch-level loss as the (1, 1) element the kernel returns."""
    return value.reshape(1, 1)


def tf_weighted_mean(x: Tensor, w: Tensor | None, c: Ctx) -> Tensor:
    """tf.compat.v1.losses.compute_weighted_loss(x, w, reduction=SUM_BY_NONZERO_WEIGHTS), as TF-GAN's losses
    (losses_impl.py: wasserstein_discriminator_loss, wasserstein_generator_loss, minimax_discriminator_loss via
    tf.compat.v1.losses.sigmoid_cross_entropy, modified_generator_loss, least_squares_*_loss,
    wasserstein_hinge_discriminator_loss) reduce each batch: sum(w x) / (the number of nonzero w, the weights
    broadcast to x), 0 when none is (math_ops.div_no_nan); the plain mean without weights. Cross-checked with a
    brute-force numpy loop."""
    if w is None:
        return x.mean()
    value = (w * x).sum() / torch.clamp_min((w != 0).sum().double(), 1.0)
    xs, ws = x.detach().numpy(), w.detach().numpy()
    total, present = 0.0, 0
    for xi, wi in zip(xs.tolist(), ws.tolist(), strict=True):
        total += wi * xi
        present += wi != 0.0
    brute = total / present if present else 0.0
    c.check(
        "sum(w x) / count(w != 0) = a brute-force loop over the scores",
        value,
        torch.tensor(brute, dtype=torch.float64),
        rtol=1e-12,
    )
    return value


def ref_wasserstein(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    r, f = t["real_scores"], t["fake_scores"]
    rw, fw = t.get("real_weights"), t.get("fake_weights")
    if c.params.get("mode", "critic") == "critic":
        return batch(tf_weighted_mean(f, fw, c) - tf_weighted_mean(r, rw, c)), None
    return batch(-tf_weighted_mean(f, fw, c) + 0 * r.sum()), None


def torch_softplus(x: Tensor) -> Tensor:
    """log(1 + e^x) to full float64 precision (F.softplus returns x itself above 20: 2e-9 short)."""
    return torch.logaddexp(x, torch.zeros_like(x))


def tf_sigmoid_cross_entropy(labels: float, logits: Tensor) -> Tensor:
    """tf.nn.sigmoid_cross_entropy_with_logits' own form: max(x, 0) - x z + log(1 + exp(-|x|))."""
    return torch.clamp_min(logits, 0) - logits * labels + torch.log1p(torch.exp(-logits.abs()))


def tf_smoothed_labels(labels: float, label_smoothing: float) -> float:
    """tf.compat.v1.losses.sigmoid_cross_entropy's label_smoothing: labels (1 - s) + s / 2."""
    return labels * (1 - label_smoothing) + 0.5 * label_smoothing if label_smoothing > 0 else labels


def ref_adversarial(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """TF-GAN losses_impl.py formulas (each term averaged with its weights before the sum:
    ``tf_weighted_mean``), written independently in torch float64 (TF-GAN needs TensorFlow, not installable
    here). label_smoothing s (the logistic discriminator only): modified_discriminator_loss and
    minimax_discriminator_loss pass it to tf.compat.v1.losses.sigmoid_cross_entropy for the real logits alone,
    whose labels 1 become 1 - s/2 (``tf_smoothed_labels``); the generated logits keep labels 0."""
    r, f = t["real_logits"], t["fake_logits"]
    rw, fw = t.get("real_weights"), t.get("fake_weights")

    def mean(x: Tensor, w: Tensor | None) -> Tensor:
        return tf_weighted_mean(x, w, c)

    formulation = c.params.get("formulation", "non_saturating")
    zero = 0 * r.sum()  # the real logits take part (with a zero gradient) in generator losses
    if c.params.get("mode", "discriminator") == "discriminator":
        if formulation in ("non_saturating", "minimax"):
            smoothing = c.f("label_smoothing", 0.0)  # rounded to the case dtype, as the kernel holds it
            real_label = tf_smoothed_labels(1.0, smoothing)
            real_losses = real_label * torch_softplus(-r) + (1 - real_label) * torch_softplus(r)
            value = mean(real_losses, rw) + mean(torch_softplus(f), fw)
            tf = mean(tf_sigmoid_cross_entropy(real_label, r), rw) + mean(tf_sigmoid_cross_entropy(0.0, f), fw)
            c.check(
                f"TF-GAN minimax_discriminator_loss(label_smoothing={c.params.get('label_smoothing', 0)}) in "
                "TensorFlow's form",
                tf,
                value,
            )
        elif formulation == "hinge":
            value = mean(F.relu(1 - r), rw) + mean(F.relu(1 + f), fw)
        else:
            value = mean(0.5 * (r - 1).square(), rw) + mean(0.5 * f.square(), fw)
        return batch(value), None
    if formulation == "non_saturating":
        value = mean(torch_softplus(-f), fw)
    elif formulation == "minimax":
        value = -mean(torch_softplus(f), fw)
        # TF-GAN's minimax_generator_loss negates its discriminator loss on placeholder real logits of 1, weighted
        # by its weights as the fake ones
        ones = torch.ones_like(f)
        tf = -(mean(tf_sigmoid_cross_entropy(1.0, ones), fw) + mean(tf_sigmoid_cross_entropy(0.0, f), fw))
        constant = mean(torch_softplus(-ones), fw)
        c.check(
            "TF-GAN minimax_generator_loss literally = ours - softplus(-1) sum(w) / count(w != 0)", tf, value - constant
        )
    elif formulation == "hinge":
        value = -mean(f, fw)
    else:
        value = mean(0.5 * (f - 1).square(), fw)
    return batch(value + zero), None


def ref_earth_movers(t: Tensors, c: Ctx) -> tuple[Tensor, None]:
    """Per sample scipy.stats.wasserstein_distance(bins, bins, u_weights, v_weights) on bins 0..K-1 (p=1),
    scipy.stats.energy_distance(...)^2 / 2 = sum (CDF difference)^2 (p=2); gradients by torch autograd of
    the same sums of CDF differences (cumsum of the normalised rows), checked against scipy's values."""
    x, y = t["predictions"], t["targets"]
    gaps = torch.cumsum(x / x.sum(-1, keepdim=True) - y / y.sum(-1, keepdim=True), -1)[:, :-1]
    p = c.params.get("p", 1)
    out = gaps.abs().sum(-1) if p == 1 else gaps.square().sum(-1)
    bins = np.arange(x.shape[-1])
    u, v = x.detach().numpy(), y.detach().numpy()
    if p == 1:
        theirs = [scipy.stats.wasserstein_distance(bins, bins, u[i], v[i]) for i in range(len(u))]
        what = "scipy.stats.wasserstein_distance(bins, bins, u_weights, v_weights)"
    else:
        theirs = [scipy.stats.energy_distance(bins, bins, u[i], v[i]) ** 2 / 2 for i in range(len(u))]
        what = "scipy.stats.energy_distance(bins, bins, u_weights, v_weights)^2 / 2"
    c.check(what, out, torch.tensor(theirs, dtype=torch.float64), rtol=1e-12)
    return out.unsqueeze(-1), None


# -- golden inputs ---------------------------------------------------------------------------------


def scores_data(suffix: str) -> GoldenData:
    """Real and fake batches (N, M) of critic scores or discriminator logits."""

    def make(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
        n, m = shape
        real, fake = rng.normal(1.0, 2.0, n), rng.normal(-1.0, 2.0, m)
        if params.get("formulation") == "hinge":  # off the kinks at real = 1, fake = -1
            real[np.abs(real - 1) < 0.05] += 0.2
            fake[np.abs(fake + 1) < 0.05] -= 0.2
        if kind == "extreme":
            if params.get("formulation") == "hinge":
                real[0], fake[0] = 1.0, -1.0  # exactly at the kinks: relu's derivative is 0 there
            real[1], fake[1] = 40.0, -40.0  # saturated logits
            real[-1], fake[-1] = -1e3, 1e3
        arrays = {f"real_{suffix}": real, f"fake_{suffix}": fake}
        if kind == "weighted":  # TF-GAN's per-score weights, a zero among them
            arrays["real_weights"], arrays["fake_weights"] = score_weights(rng, n, m)
        return arrays

    return make


def score_weights(rng: np.random.Generator, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-score weights of a real batch of n and a fake batch of m, one zero in each (TF-GAN counts only the
    nonzero ones)."""
    real, fake = rng.uniform(0.2, 3.0, n), rng.uniform(0.2, 3.0, m)
    real[1], fake[0] = 0.0, 0.0
    return real, fake


def distributions_data(kind: str, shape: tuple[int, ...], rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    n, k = shape
    predictions = rng.dirichlet(np.ones(k), size=n)
    predictions[0] *= 0.7  # an unnormalised row: scipy (and the kernel) divide by its sum
    targets = rng.dirichlet(np.ones(k) * 0.5, size=n)
    targets[1] = np.eye(k)[rng.integers(k)]
    if kind == "extreme":
        predictions[0] = targets[0]  # identical rows: every CDF difference is exactly 0
        predictions[1] = np.eye(k)[0]  # point masses at opposite ends
        targets[1] = np.eye(k)[k - 1]
        predictions[2] = 0.0  # equal prefixes (exact in binary): some differences exactly 0
        predictions[2, :2], predictions[2, -1] = [0.25, 0.25], 0.5
        targets[2] = 0.0
        targets[2, :2], targets[2, 3] = [0.25, 0.25], 0.5
    return {"predictions": predictions, "targets": targets}


# -- finite-difference inputs ----------------------------------------------------------------------


def fd_batch_scores(suffix: str) -> FdData:
    """A real batch of 3 and a fake batch of 5 scores, away from the hinge formulation's kinks at +-1, with
    per-score weights (one zero in each batch)."""

    def make(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
        real, fake = rng.normal(0.5, 2.0, 3), rng.normal(-0.5, 2.0, 5)
        real[np.abs(real - 1.0) < 0.1] += 0.3
        fake[np.abs(fake + 1.0) < 0.1] -= 0.3
        weights = score_weights(rng, 3, 5)  # TF-GAN's per-score weights (the goldens check unit weights too)
        return {f"real_{suffix}": real, f"fake_{suffix}": fake, "real_weights": weights[0], "fake_weights": weights[1]}

    return make


def fd_distributions(rng: np.random.Generator, params: dict[str, Any]) -> Arrays:
    """Rows (one unnormalised) whose CDF differences stay away from 0 (the kinks of |.| for p = 1)."""
    while True:
        predictions = rng.dirichlet(np.ones(5), size=3)
        predictions[0] *= 0.6
        targets = rng.dirichlet(np.ones(5), size=3)
        gaps = np.cumsum(predictions / predictions.sum(-1, keepdims=True) - targets, axis=-1)[:, :-1]
        if np.all(np.abs(gaps) > 0.02):
            return {"predictions": predictions, "targets": targets}


# -- declarations ----------------------------------------------------------------------------------

LOSSES = (
    LossInfo(
        "wasserstein",
        whole="batch-level",
        golden=Golden(
            reference=ref_wasserstein,
            data=scores_data("scores"),
            differentiable=("real_scores", "fake_scores"),
            shapes={"n5m3": (5, 3), "n3m7": (3, 7)},
            batch_level=True,
            describe=lambda p: (
                "WGAN formula in torch float64 with autograd: "
                + ("mean(fake) - mean(real)" if p.get("mode", "critic") == "critic" else "-mean(fake)")
                + " (tfgan.losses.wasserstein_discriminator_loss / wasserstein_generator_loss), each mean weighted "
                "as TF-GAN's compute_weighted_loss(SUM_BY_NONZERO_WEIGHTS) where the case has real_weights and "
                "fake_weights"
            ),
            combos=(
                ({}, WEIGHTED),
                ({"mode": "generator"}, WEIGHTED),
            ),
        ),
        gradients=GradientCase(fd_batch_scores("scores"), ({}, {"mode": "generator"})),
        domain=BatchScores(("real_scores", "fake_scores")),
    ),
    LossInfo(
        "adversarial",
        whole="batch-level",
        golden=Golden(
            reference=ref_adversarial,
            data=scores_data("logits"),
            differentiable=("real_logits", "fake_logits"),
            shapes={"n5m3": (5, 3), "n3m7": (3, 7)},
            batch_level=True,
            describe=lambda p: (
                "TF-GAN losses_impl.py formulas "
                + (
                    f"with label_smoothing={p['label_smoothing']} (modified_discriminator_loss / "
                    "minimax_discriminator_loss: the real labels 1 - s/2 of tf.compat.v1.losses.sigmoid_cross_entropy, "
                    "the generated labels 0)"
                    if p.get("label_smoothing")
                    else "without label smoothing"
                )
                + ", each term averaged before the sum (weighted as TF-GAN's compute_weighted_loss("
                "SUM_BY_NONZERO_WEIGHTS) where the case has real_weights and fake_weights), as an independent float64 "
                "torch implementation with autograd (TF-GAN needs TensorFlow, which is not installable here); "
                "softplus as torch.logaddexp(x, 0)"
            ),
            combos=(
                *(
                    ({"formulation": formulation, "mode": mode}, WEIGHTED)
                    for formulation in ("non_saturating", "minimax", "hinge", "least_squares")
                    for mode in ("discriminator", "generator")
                ),
                # TF-GAN's one-sided label smoothing: its default 0.25, another value, and the largest (labels 0.5)
                ({"formulation": "non_saturating", "label_smoothing": 0.25}, WEIGHTED),
                ({"formulation": "minimax", "label_smoothing": 0.1}, WEIGHTED),
                ({"formulation": "non_saturating", "label_smoothing": 1.0}, ("random", "weighted")),
            ),
        ),
        gradients=GradientCase(
            fd_batch_scores("logits"),
            (
                *(
                    {"formulation": formulation, "mode": mode}
                    for formulation in ("non_saturating", "minimax", "hinge", "least_squares")
                    for mode in ("discriminator", "generator")
                ),
                {"formulation": "non_saturating", "label_smoothing": 0.25},
                {"formulation": "minimax", "label_smoothing": 0.7},
            ),
        ),
        domain=BatchScores(("real_logits", "fake_logits")),
    ),
    LossInfo(
        "earth_movers",
        golden=Golden(
            reference=ref_earth_movers,
            data=distributions_data,
            differentiable=("predictions",),
            shapes={"k6": (4, 6), "k10": (3, 10)},
            describe=lambda p: (
                (
                    "scipy.stats.wasserstein_distance(range(K), range(K), u_weights=predictions[n], "
                    "v_weights=targets[n]) per sample"
                    if p.get("p", 1) == 1
                    else "scipy.stats.energy_distance(range(K), range(K), predictions[n], targets[n])^2 / 2 "
                    "= sum_k (CDF difference)^2, per sample"
                )
                + "; gradients by torch autograd of the sum of CDF differences of the normalised rows"
            ),
            combos=(
                ({}, BOTH),
                ({"p": 2}, BOTH),
            ),
            versions=("scipy",),
        ),
        gradients=GradientCase(fd_distributions, ({}, {"p": 2})),
        domain=Bins(),
    ),
)
