"""Generative-model losses: GAN objectives on critic scores or discriminator logits (one value for the
whole batch, real and fake batches of different lengths), and the earth mover's distance between
distributions over ordered bins."""

from typing import Literal

import numpy as np
from onnx import TensorProto
from onnxscript import opset18 as op
from onnxscript import script
from pydantic import Field, ValidationInfo, field_validator

from kernels.curves import Arrays, Curve
from kernels.ops import LOSSD, logistic, spread
from kernels.spec import Card, Input, KernelFunction, Params, Properties, loss

F64 = TensorProto.DOUBLE


@script(LOSSD, default_opset=op)
def nonzero(w):  # type: ignore[no-untyped-def]
    """How many weights are nonzero, shape (1,), in w's dtype."""
    return op.ReduceSum(op.CastLike(op.Not(op.Equal(w, op.CastLike(0.0, w))), w), keepdims=1)


@script(LOSSD, default_opset=op)
def mean64(x, w):  # type: ignore[no-untyped-def]
    """TF-GAN's weighted mean of a 1-D tensor of scores (tf.compat.v1.losses.compute_weighted_loss, reduction
    SUM_BY_NONZERO_WEIGHTS): sum(w x) / (the number of nonzero weights), 0 when every weight is 0 (TF's
    div_no_nan); the plain mean for unit weights. A float64 tensor of shape (1,): accumulated in float64 so a
    float32 batch of millions of scores stays exact to float32 rounding."""
    w64 = op.Cast(w, to=F64)
    total = op.ReduceSum(op.Cast(x, to=F64) * w64, keepdims=1)
    return total / op.Max(nonzero(w64), op.CastLike(1.0, w64))


@script(LOSSD, default_opset=op)
def batch_element(value, like):  # type: ignore[no-untyped-def]
    """A batch-level loss value (float64, shape (1,)) as the kernel's (1, 1) element in like's dtype."""
    return op.CastLike(op.Unsqueeze(value, op.Constant(value_ints=[1])), like)


@script(LOSSD, default_opset=op)
def per_score(x, w):  # type: ignore[no-untyped-def]
    """w / (the number of nonzero weights), shaped as x, in x's dtype: the weight of each score in its batch's
    weighted mean (1 / len(x) for unit weights)."""
    w64 = op.Cast(w, to=F64)
    return op.CastLike(w64 / op.Max(nonzero(w64), op.CastLike(1.0, w64)), x)


@script(LOSSD, default_opset=op)
def zeros_like(x):  # type: ignore[no-untyped-def]
    return op.Expand(op.CastLike(0.0, x), op.Shape(x))


# --- wasserstein -------------------------------------------------------------------------------------

Mode = Literal["critic", "generator"]


class WassersteinParams(Params):
    mode: Mode = Field(
        "critic", description="critic: mean(fake) - mean(real), minimised by the critic; generator: -mean(fake)."
    )


@script(LOSSD, default_opset=op)
def wasserstein_critic(real_scores, fake_scores, real_weights, fake_weights):  # type: ignore[no-untyped-def]
    value = mean64(fake_scores, fake_weights) - mean64(real_scores, real_weights)
    real_grad = op.Neg(per_score(real_scores, real_weights))
    fake_grad = per_score(fake_scores, fake_weights)
    return batch_element(value, fake_scores), real_grad, fake_grad


@script(LOSSD, default_opset=op)
def wasserstein_generator(real_scores, fake_scores, real_weights, fake_weights):  # type: ignore[no-untyped-def]
    value = op.Neg(mean64(fake_scores, fake_weights))
    fake_grad = op.Neg(per_score(fake_scores, fake_weights))
    return batch_element(value, fake_scores), zeros_like(real_scores), fake_grad


SCORE_WEIGHTS = (
    "No sample weights (the weights field is refused: one value for the whole batch); instead the optional inputs "
    "real_weights (N,) and fake_weights (M,) weigh the scores as TF-GAN does: each batch's mean becomes sum(w x) / "
    "(the number of nonzero w), 0 when every weight is 0 (compute_weighted_loss, SUM_BY_NONZERO_WEIGHTS); left out, "
    "they are all 1. per_sample is [loss]."
)


def score_weights(of: str) -> tuple[Input, Input]:
    """The optional per-score weights of a GAN batch (TF-GAN's real_weights and generated_weights), named after
    the scores they weigh: each batch's term is sum(w s) / (the number of nonzero w), TF-GAN's
    compute_weighted_loss with its default reduction SUM_BY_NONZERO_WEIGHTS."""
    return (
        Input(
            "real_weights",
            ("N",),
            "nonnegative",
            f"Weights of the real {of} (TF-GAN's real_weights): the real term is sum(w x) / (the number of "
            "nonzero w), 0 when all are 0; a scalar weight is the same value repeated N times.",
            optional=1.0,
        ),
        Input(
            "fake_weights",
            ("M",),
            "nonnegative",
            f"Weights of the generated {of} (TF-GAN's generated_weights, or weights of the generator losses), "
            "averaged like real_weights.",
            optional=1.0,
        ),
    )


SCORES = (
    Input("real_scores", ("N",), "real", "Critic scores of the real samples.", differentiable=True),
    Input("fake_scores", ("M",), "real", "Critic scores of the generated samples (any length M).", differentiable=True),
    *score_weights("scores"),
)


def _one_point(name: str, fixed: float) -> Curve:
    """A batch-level GAN loss along the fake score: each point is a batch of one real score (fixed) and one
    fake score x (kernels/curves.py: a batch-level loss evaluates each row as its own batch)."""
    return Curve(
        f"fake {name} (one real {name} = {fixed:g})",
        -6.0,
        6.0,
        inputs=lambda x: {f"real_{name}s": np.full((x.size, 1), fixed), f"fake_{name}s": x[:, None].copy()},
        direction=lambda x: {f"fake_{name}s": np.ones((x.size, 1))},
    )


@loss(
    name="wasserstein",
    task="generative",
    inputs=SCORES,
    params=WassersteinParams,
    batch_level=True,
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=True,
        convex=True,
        differentiable=True,
        bounded_below=False,
        probabilistic_interpretation="The critic's estimate of the Wasserstein-1 distance between the real and "
        "generated distributions (Kantorovich-Rubinstein duality, for a 1-Lipschitz critic), negated.",
    ),
    card=Card(
        title="Wasserstein GAN loss",
        summary="The WGAN objective on critic scores, one value for the whole batch: the critic minimises "
        "mean(fake) - mean(real), the generator minimises -mean(fake). Real and fake batches may differ in "
        "length; each mean runs in float64. Linear in the scores, so its gradients are constant (-1/N and 1/M; "
        "zero for the real scores in generator mode) and it has no lower bound: the critic must be kept "
        "Lipschitz (weight clipping, or a gradient penalty computed outside this service, since it needs the "
        "critic's input gradient). " + SCORE_WEIGHTS,
        formula=r"\mathcal L_{critic} = \tfrac1M \sum_j f_j - \tfrac1N \sum_i r_i,\qquad "
        r"\mathcal L_{generator} = -\tfrac1M \sum_j f_j",
        use_cases=(
            "Training Wasserstein GANs (WGAN with weight clipping, WGAN-GP with an external penalty)",
            "Monitoring the critic's estimate of the distance between real and generated data",
        ),
        equivalents={
            "tf-gan": "tfgan.losses.wasserstein_discriminator_loss(real, gen, real_weights, generated_weights) / "
            "wasserstein_generator_loss(gen, weights) with the default reduction SUM_BY_NONZERO_WEIGHTS (matched): "
            "real_weights = real_weights, generated_weights (or the generator's weights) = fake_weights, each shaped "
            "as its scores (a scalar weight: repeat it)",
            "torch": "none in torch.nn: fake.mean() - real.mean() and -fake.mean()",
            "keras": "none in Keras 3",
        },
        references=(
            "Arjovsky, M., Chintala, S., Bottou, L. (2017). Wasserstein Generative Adversarial Networks. ICML.",
            "Gulrajani, I. et al. (2017). Improved Training of Wasserstein GANs. NeurIPS.",
        ),
    ),
    curve=_one_point("score", 1.0),
)
def wasserstein(mode: Mode) -> KernelFunction:
    return wasserstein_critic if mode == "critic" else wasserstein_generator


# --- adversarial -------------------------------------------------------------------------------------

Formulation = Literal["non_saturating", "minimax", "hinge", "least_squares"]
Role = Literal["discriminator", "generator"]


def smoothed(formulation: str, mode: str) -> bool:
    """Whether label smoothing applies: the logistic discriminator (TF-GAN's modified / minimax
    discriminator loss)."""
    return formulation in ("non_saturating", "minimax") and mode == "discriminator"


class AdversarialParams(Params):
    formulation: Formulation = Field(
        "non_saturating",
        description="non_saturating and minimax share the discriminator loss and differ for the generator; "
        "hinge is SN-GAN's; least_squares is LSGAN's with targets 1 (real) and 0 (fake).",
    )
    mode: Role = Field("discriminator", description="Whose loss: the discriminator's or the generator's.")
    label_smoothing: float = Field(
        0.0,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="TF-GAN's one-sided label smoothing s (modified_discriminator_loss / "
        "minimax_discriminator_loss, whose default is 0.25): the real labels become 1 - s/2 "
        "(tf.compat.v1.losses.sigmoid_cross_entropy's y(1 - s) + s/2), the fake labels stay 0. Only for the "
        "logistic discriminator (formulation non_saturating or minimax, mode discriminator); Keras and torch "
        "have no GAN loss with it.",
    )

    @field_validator("label_smoothing")
    @classmethod
    def _logistic_discriminator_only(cls, value: float, info: ValidationInfo) -> float:
        formulation, mode = info.data.get("formulation"), info.data.get("mode")
        if value != 0 and formulation is not None and mode is not None and not smoothed(formulation, mode):
            raise ValueError(
                "label_smoothing applies only to the logistic discriminator (formulation non_saturating or "
                f"minimax, mode discriminator), not to formulation={formulation} with mode={mode}: TF-GAN "
                "smooths only the real labels of modified_discriminator_loss and minimax_discriminator_loss; "
                "use label_smoothing=0"
            )
        return value


@script(LOSSD, default_opset=op)
def adversarial_logistic_discriminator(real_logits, fake_logits, real_weights, fake_weights, label_smoothing):  # type: ignore[no-untyped-def]
    # TF-GAN's one-sided label smoothing (tf.compat.v1.losses.sigmoid_cross_entropy): real labels
    # t = 1 - s/2, so each real score costs t softplus(-r) + (s/2) softplus(r), both terms nonnegative and
    # exactly softplus(-r) at s = 0; its derivative (s/2) sigmoid(r) - t sigmoid(-r) = sigmoid(r) - t,
    # written so that s = 0 gives -sigmoid(-r) to full relative precision
    r_pos, r_neg, softplus_r, softplus_neg_r = logistic(real_logits)
    f_pos, _, softplus_f, _ = logistic(fake_logits)
    off = 0.5 * label_smoothing
    on = 1.0 - off
    real_losses = on * softplus_neg_r + off * softplus_r
    value = mean64(real_losses, real_weights) + mean64(softplus_f, fake_weights)
    real_grad = (off * r_pos - on * r_neg) * per_score(real_logits, real_weights)
    return batch_element(value, fake_logits), real_grad, f_pos * per_score(fake_logits, fake_weights)


@script(LOSSD, default_opset=op)
def adversarial_minimax_generator(real_logits, fake_logits, real_weights, fake_weights):  # type: ignore[no-untyped-def]
    f_pos, _, softplus_f, _ = logistic(fake_logits)
    value = op.Neg(mean64(softplus_f, fake_weights))
    fake_grad = op.Neg(f_pos) * per_score(fake_logits, fake_weights)
    return batch_element(value, fake_logits), zeros_like(real_logits), fake_grad


@script(LOSSD, default_opset=op)
def adversarial_non_saturating_generator(real_logits, fake_logits, real_weights, fake_weights):  # type: ignore[no-untyped-def]
    _, f_neg, _, softplus_neg_f = logistic(fake_logits)
    fake_grad = op.Neg(f_neg) * per_score(fake_logits, fake_weights)
    return batch_element(mean64(softplus_neg_f, fake_weights), fake_logits), zeros_like(real_logits), fake_grad


@script(LOSSD, default_opset=op)
def adversarial_hinge_discriminator(real_logits, fake_logits, real_weights, fake_weights):  # type: ignore[no-untyped-def]
    zero = op.CastLike(0.0, real_logits)
    real_gap = 1.0 - real_logits
    fake_gap = 1.0 + fake_logits
    value = mean64(op.Relu(real_gap), real_weights) + mean64(op.Relu(fake_gap), fake_weights)
    # relu's derivative is 0 at 0 (torch and TensorFlow agree)
    real_grad = op.Neg(op.CastLike(op.Greater(real_gap, zero), zero)) * per_score(real_logits, real_weights)
    fake_grad = op.CastLike(op.Greater(fake_gap, zero), zero) * per_score(fake_logits, fake_weights)
    return batch_element(value, fake_logits), real_grad, fake_grad


@script(LOSSD, default_opset=op)
def adversarial_hinge_generator(real_logits, fake_logits, real_weights, fake_weights):  # type: ignore[no-untyped-def]
    fake_grad = op.Neg(per_score(fake_logits, fake_weights))
    return batch_element(op.Neg(mean64(fake_logits, fake_weights)), fake_logits), zeros_like(real_logits), fake_grad


@script(LOSSD, default_opset=op)
def adversarial_least_squares_discriminator(real_logits, fake_logits, real_weights, fake_weights):  # type: ignore[no-untyped-def]
    real_gap = real_logits - 1.0
    value = 0.5 * (mean64(real_gap * real_gap, real_weights) + mean64(fake_logits * fake_logits, fake_weights))
    return (
        batch_element(value, fake_logits),
        real_gap * per_score(real_logits, real_weights),
        fake_logits * per_score(fake_logits, fake_weights),
    )


@script(LOSSD, default_opset=op)
def adversarial_least_squares_generator(real_logits, fake_logits, real_weights, fake_weights):  # type: ignore[no-untyped-def]
    fake_gap = fake_logits - 1.0
    value = 0.5 * mean64(fake_gap * fake_gap, fake_weights)
    return batch_element(value, fake_logits), zeros_like(real_logits), fake_gap * per_score(fake_logits, fake_weights)


ADVERSARIAL_KERNELS: dict[tuple[Formulation, Role], KernelFunction] = {
    ("non_saturating", "discriminator"): adversarial_logistic_discriminator,
    ("minimax", "discriminator"): adversarial_logistic_discriminator,
    ("non_saturating", "generator"): adversarial_non_saturating_generator,
    ("minimax", "generator"): adversarial_minimax_generator,
    ("hinge", "discriminator"): adversarial_hinge_discriminator,
    ("hinge", "generator"): adversarial_hinge_generator,
    ("least_squares", "discriminator"): adversarial_least_squares_discriminator,
    ("least_squares", "generator"): adversarial_least_squares_generator,
}


@loss(
    name="adversarial",
    task="generative",
    inputs=(
        Input("real_logits", ("N",), "real", "Discriminator logits on the real samples.", differentiable=True),
        Input(
            "fake_logits",
            ("M",),
            "real",
            "Discriminator logits on the generated samples (any length M).",
            differentiable=True,
        ),
        *score_weights("logits"),
    ),
    params=AdversarialParams,
    batch_level=True,
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=True,
        convex=True,
        differentiable=True,
        bounded_below=True,
        probabilistic_interpretation="Discriminator (default): the negative log-likelihood of a logistic "
        "classifier telling real (label 1) from generated (label 0) samples, each batch averaged.",
    ),
    card=Card(
        title="GAN adversarial loss",
        summary="The standard GAN objectives on discriminator logits, one value for the whole batch, as TF-GAN "
        "defines them: each term is averaged over its own batch (real N, fake M) before the terms are summed. "
        "Discriminator, non_saturating and minimax: softplus(-r) + softplus(f) (binary cross-entropy with real = "
        "1, fake = 0); label_smoothing s is TF-GAN's one-sided label smoothing of that discriminator (its "
        "default there is 0.25, here 0): the real labels become t = 1 - s/2, the fake ones stay 0, so each real "
        "score costs t softplus(-r) + (1 - t) softplus(r), with gradient sigmoid(r) - t (times its weight "
        "factor); Keras and torch have no GAN loss with label smoothing, and every other formulation or mode "
        "refuses a nonzero s (422). Generator, non_saturating: softplus(-f); minimax: "
        "-softplus(f) = log(1 - sigmoid(f)), which saturates and has no lower bound; hinge: relu(1 - r) + "
        "relu(1 + f) and -f; least_squares: (r - 1)^2 / 2 + f^2 / 2 and (f - 1)^2 / 2. Stable softplus forms "
        "throughout; generator modes give the real logits a zero gradient. Properties are those of the default "
        "(non-saturating discriminator): convex, smooth, bounded below, gradients bounded by 1/N and 1/M; "
        "hinge has kinks, least_squares unbounded gradients, the minimax generator no lower bound. " + SCORE_WEIGHTS,
        formula=r"\mathcal L_D = \overline{t\,\mathrm{softplus}(-r) + (1 - t)\,\mathrm{softplus}(r)} + "
        r"\overline{\mathrm{softplus}(f)},\ t = 1 - \tfrac s2,\quad "
        r"\mathcal L_G = \overline{\mathrm{softplus}(-f)}\ \ (\text{non-saturating}),\ "
        r"-\overline{\mathrm{softplus}(f)}\ \ (\text{minimax}),\ -\bar f\ \ (\text{hinge}),\ "
        r"\tfrac12 \overline{(f - 1)^2}\ \ (\text{least squares})",
        use_cases=(
            "Training GANs: the discriminator's and the generator's objectives",
            "Comparing GAN formulations on the same logits",
        ),
        equivalents={
            "tf-gan": "tfgan.losses.modified_discriminator_loss / minimax_discriminator_loss with "
            "label_smoothing as ours (matched; send 0.25 for TF-GAN's default, which makes the real "
            "labels 0.875: ours defaults to 0), modified_generator_loss (with its default label_smoothing=0: the "
            "generator modes take none), "
            "wasserstein_hinge_discriminator_loss / wasserstein_hinge_generator_loss, "
            "least_squares_discriminator_loss / least_squares_generator_loss; their real_weights and "
            "generated_weights (generators: weights), reduction SUM_BY_NONZERO_WEIGHTS, are the inputs real_weights "
            "and fake_weights (matched; a scalar weight: repeat it)",
            "tf-gan minimax generator": "tfgan.losses.minimax_generator_loss(f, label_smoothing=0) returns ours "
            "minus log(1 + e^-1) = 0.3133 (with weights: 0.3133 sum(w) / (the number of nonzero w)): it negates "
            "the discriminator loss with placeholder real logits of 1 weighted by its weights, which adds "
            "-softplus(-1); the gradients are the same",
            "torch": "none in torch.nn, and no one-sided label smoothing; e.g. F.softplus(-r).mean() + "
            "F.softplus(f).mean(), or F.binary_cross_entropy_with_logits(r, torch.full_like(r, 1 - s / 2)) + "
            "F.softplus(f).mean() with smoothing",
            "keras": "none in Keras 3 (no GAN losses; BinaryCrossentropy(label_smoothing) smooths both labels "
            "towards 0.5, not the real ones only)",
            "monai": "monai.losses.PatchAdversarialLoss differs: least squares applies LeakyReLU(0.05) and an MSE "
            "without 1/2, hinge applies tanh first",
        },
        references=(
            "Goodfellow, I. et al. (2014). Generative Adversarial Nets. NeurIPS.",
            "Mao, X. et al. (2017). Least Squares Generative Adversarial Networks. ICCV.",
            "Miyato, T. et al. (2018). Spectral Normalization for Generative Adversarial Networks. ICLR.",
            "Salimans, T. et al. (2016). Improved Techniques for Training GANs. NeurIPS (one-sided label smoothing).",
            "TF-GAN, tensorflow_gan/python/losses/losses_impl.py.",
        ),
    ),
    curve=_one_point("logit", 2.0),
)
def adversarial(formulation: Formulation, mode: Role) -> KernelFunction:
    return ADVERSARIAL_KERNELS[(formulation, mode)]


# --- earth mover's distance --------------------------------------------------------------------------


class EarthMoversParams(Params):
    p: Literal[1, 2] = Field(
        1, description="1: earth mover's distance sum_k |CDF diff|; 2: squared EMD sum_k (CDF diff)^2."
    )


@script(LOSSD, default_opset=op)
def cdf_gaps(predictions, targets):  # type: ignore[no-untyped-def]
    """The normalised predictions q = p / sum p, their row sums, and the CDF differences at bins
    0..K-2 (at the last bin both CDFs are 1)."""
    axis = op.Constant(value_ints=[-1])
    total = op.ReduceSum(predictions, axis, keepdims=1)
    q = predictions / spread(total, predictions)  # per-row values as outer products: see kernels.ops
    cdf = op.CumSum(q - targets / spread(op.ReduceSum(targets, axis, keepdims=1), targets), op.Constant(value_int=1))
    gaps = op.Slice(cdf, op.Constant(value_ints=[0]), op.Constant(value_ints=[-1]), op.Constant(value_ints=[1]))
    return q, total, gaps


@script(LOSSD, default_opset=op)
def through_cdf(slopes, q, total):  # type: ignore[no-untyped-def]
    """d loss / d predictions from d loss / d gaps (N, K-1): a reversed cumulative sum gives d loss / d q_j
    = sum_{k >= j} slope_k (0 for the last bin), then the normalisation q = p / sum p."""
    padded = op.Pad(slopes, op.Constant(value_ints=[0, 0, 0, 1]))
    dq = op.CumSum(padded, op.Constant(value_int=1), reverse=1)
    return (dq - spread(op.ReduceSum(dq * q, op.Constant(value_ints=[-1]), keepdims=1), dq)) / spread(total, dq)


@script(LOSSD, default_opset=op)
def earth_movers_p1(predictions, targets):  # type: ignore[no-untyped-def]
    q, total, gaps = cdf_gaps(predictions, targets)
    elements = op.ReduceSum(op.Abs(gaps), op.Constant(value_ints=[-1]), keepdims=1)
    return elements, through_cdf(op.Sign(gaps), q, total)


@script(LOSSD, default_opset=op)
def earth_movers_p2(predictions, targets):  # type: ignore[no-untyped-def]
    q, total, gaps = cdf_gaps(predictions, targets)
    elements = op.ReduceSum(gaps * gaps, op.Constant(value_ints=[-1]), keepdims=1)
    return elements, through_cdf(gaps + gaps, q, total)


BINS = 5
TARGET_BIN = 2


def _mass_at(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All mass at position x in [0, K-1], split linearly between the two nearest bins; and d/dx. At an
    integer x the pair of bins on the target's side moves (at x = 3: bins 2 and 3, all the mass in 3), so a
    CDF difference that is exactly 0 there stays 0 (the kernel's zero subgradient would show as a false
    kink)."""
    low = np.clip(np.where(x < TARGET_BIN, np.floor(x), np.ceil(x) - 1), 0, BINS - 2).astype(int)
    frac = x - low
    rows = np.arange(x.size)
    mass, slope = np.zeros((x.size, BINS)), np.zeros((x.size, BINS))
    mass[rows, low], mass[rows, low + 1] = 1.0 - frac, frac
    slope[rows, low], slope[rows, low + 1] = -1.0, 1.0
    return mass, slope


def _emd_inputs(x: np.ndarray) -> Arrays:
    return {"predictions": _mass_at(x)[0], "targets": np.eye(BINS)[np.full(x.size, TARGET_BIN)]}


@loss(
    name="earth_movers",
    aliases=("emd",),
    task="generative",
    inputs=(
        Input(
            "predictions",
            ("N", "K"),
            "probability",
            "Predicted distribution over K ordered bins (values in [0, 1]; each row is divided by its sum, "
            "which must be positive).",
            differentiable=True,
            normalized=True,
        ),
        Input(
            "targets",
            ("N", "K"),
            "probability",
            "Target distribution over the same bins (values in [0, 1]; normalised like predictions).",
            normalized=True,
        ),
    ),
    params=EarthMoversParams,
    properties=Properties(
        robust_to_outliers=True,
        smooth_gradient=False,
        convex=True,
        differentiable=False,
        bounded_below=True,
        probabilistic_interpretation="The optimal-transport cost of moving the predicted probability mass onto "
        "the target's, one bin step costing 1 (p = 1).",
    ),
    card=Card(
        title="Earth mover's distance",
        summary="Wasserstein-1 distance between two distributions over the same K ordered bins at positions "
        "0..K-1: the sum over bins of |CDF(predictions) - CDF(targets)|, as scipy.stats.wasserstein_distance "
        "computes it per sample. Like scipy, each row is normalised to sum 1 first (rows need a positive sum; "
        "gradients are of the normalised form, so they are orthogonal to the prediction row itself). p=2 "
        "gives the squared EMD, the sum of squared CDF differences, smooth everywhere. The default (p=1) is "
        "convex on the simplex with bounded gradients, and kinks where a CDF difference changes sign.",
        formula=r"\ell = \sum_{k=0}^{K-2} \left| \sum_{j \le k} \left(\frac{p_j}{\sum p} - \frac{t_j}{\sum t}"
        r"\right) \right|^{p}",
        use_cases=(
            "Ordinal classification (ratings, age groups, severity grades) where near misses cost less",
            "Aesthetic and quality score distributions (NIMA)",
            "Comparing histograms over an ordered axis",
        ),
        equivalents={
            "scipy": "scipy.stats.wasserstein_distance(range(K), range(K), u_weights=predictions[n], "
            "v_weights=targets[n]) per sample (p=1); p=2: scipy.stats.energy_distance(...)^2 / 2",
            "note": "Hou et al. (2016) and NIMA use (1/K sum_k |CDF diff|^r)^(1/r): for r = 1 that is ours / K, "
            "for r = 2 the square root of (ours with p=2) / K",
            "torch": "none in torch.nn",
            "keras": "none in Keras 3",
        },
        references=(
            "Rubner, Y., Tomasi, C., Guibas, L. J. (2000). The Earth Mover's Distance as a Metric for Image "
            "Retrieval. IJCV.",
            "Hou, L., Yu, C.-P., Samaras, D. (2016). Squared Earth Mover's Distance-based Loss for Training Deep "
            "Neural Networks. arXiv:1611.05916.",
        ),
    ),
    curve=Curve(
        f"position of the predicted mass (target: all mass in bin {TARGET_BIN} of {BINS})",
        0.0,
        BINS - 1.0,
        inputs=_emd_inputs,
        direction=lambda x: {"predictions": _mass_at(x)[1]},
    ),
)
def earth_movers(p: Literal[1, 2]) -> KernelFunction:
    return earth_movers_p1 if p == 1 else earth_movers_p2
