"""Choosing a loss: the usual selection guidance as a table of rules, ranked per query."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kernels.spec import REGISTRY, Registry, Task

OutputKind = Literal["probabilities", "logits", "embeddings", "sequences", "masks"]
SCORES: frozenset[OutputKind] = frozenset({"probabilities", "logits"})
TASK_OF_OUTPUT: dict[OutputKind, Task] = {
    "probabilities": "classification",
    "logits": "classification",
    "embeddings": "ranking",
    "sequences": "sequence",
    "masks": "segmentation",
}


@dataclass(frozen=True)
class Query:
    task: Task | None = None
    outliers: bool | None = None
    imbalanced: bool | None = None
    output: OutputKind | None = None

    def normalised(self) -> Query:
        """``task=imbalance`` is classification with imbalanced classes; an output kind
        such as embeddings implies its task."""
        task, imbalanced = self.task, self.imbalanced
        if task == "imbalance":
            task, imbalanced = "classification", True if imbalanced is None else imbalanced
        if task is None and self.output in TASK_OF_OUTPUT:
            task = TASK_OF_OUTPUT[self.output]
        return Query(task, self.outliers, imbalanced, self.output)


@dataclass(frozen=True)
class Rule:
    loss: str
    reason: str
    tasks: frozenset[Task]
    outliers: bool | None = None
    imbalanced: bool | None = None
    outputs: frozenset[OutputKind] = frozenset()
    priority: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    def score(self, query: Query) -> int | None:
        """None when the rule does not apply; otherwise how well it fits."""
        if query.task is not None and query.task not in self.tasks:
            return None
        score = self.priority
        for wanted, offered in ((query.outliers, self.outliers), (query.imbalanced, self.imbalanced)):
            if wanted is not None and offered is not None:
                if wanted != offered:
                    return None
                score += 2
        if query.output is not None and self.outputs:
            if query.output not in self.outputs:
                return None
            score += 1
        return score


def rule(loss: str, reason: str, *tasks: Task, outputs: tuple[OutputKind, ...] = (), **kw: Any) -> Rule:
    return Rule(loss, reason, frozenset(tasks), outputs=frozenset(outputs), **kw)


CLASSIFY: tuple[Task, ...] = ("classification",)
RULES: tuple[Rule, ...] = (
    # Regression: the noise decides.
    rule(
        "mse",
        "Gaussian noise: MSE is its maximum-likelihood loss and estimates the conditional mean.",
        "regression",
        outliers=False,
        priority=3,
    ),
    rule(
        "huber",
        "Outliers: quadratic near zero, linear beyond delta, so an outlier pulls with bounded force.",
        "regression",
        outliers=True,
        priority=3,
    ),
    rule(
        "mae",
        "Outliers: estimates the conditional median; every residual pulls with the same force.",
        "regression",
        outliers=True,
        priority=2,
    ),
    rule(
        "log_cosh",
        "Outliers, smoothly: behaves like Huber but is twice differentiable.",
        "regression",
        outliers=True,
        priority=2,
    ),
    rule(
        "smooth_l1",
        "Outliers: Huber scaled by 1/beta, the usual choice for bounding-box regression.",
        "regression",
        outliers=True,
        priority=1,
    ),
    rule("quantile", "Predicting a quantile or an interval rather than the mean (pinball loss).", "regression"),
    rule("poisson_nll", "Count targets: Poisson negative log-likelihood.", "regression"),
    rule("gaussian_nll", "Predicting a variance too: heteroscedastic Gaussian likelihood.", "regression"),
    rule("msle", "Targets spanning orders of magnitude: errors on a log scale.", "regression", outliers=False),
    rule(
        "mape", "Errors relative to the target's size, in percent (targets away from 0).", "regression", outliers=False
    ),
    rule(
        "crps",
        "Ensemble or sampled forecasts: the continuous ranked probability score rewards calibration and sharpness.",
        "regression",
    ),
    rule(
        "giou", "Bounding boxes (x1, y1, x2, y2): 1 - generalized IoU, a gradient even without overlap.", "regression"
    ),
    rule("diou", "Bounding boxes: IoU plus the distance between centres, converges faster than GIoU.", "regression"),
    rule("ciou", "Bounding boxes where the aspect ratio matters too (complete IoU).", "regression"),
    # Classification: likelihood first, then imbalance.
    rule(
        "binary_cross_entropy",
        "Binary or multi-label outputs: Bernoulli negative log-likelihood, the default.",
        *CLASSIFY,
        imbalanced=False,
        outputs=("probabilities", "logits"),
        priority=3,
    ),
    rule(
        "sparse_cross_entropy",
        "Multi-class with integer labels: categorical negative log-likelihood, the default.",
        *CLASSIFY,
        imbalanced=False,
        outputs=("probabilities", "logits"),
        priority=3,
    ),
    rule(
        "cross_entropy",
        "Multi-class with one-hot or soft targets (e.g. distillation).",
        *CLASSIFY,
        imbalanced=False,
        outputs=("probabilities", "logits"),
        priority=2,
    ),
    rule(
        "label_smoothing_cross_entropy",
        "Over-confident multi-class models: smoothed targets regularise.",
        *CLASSIFY,
        imbalanced=False,
        outputs=("probabilities", "logits"),
        priority=1,
    ),
    rule(
        "focal",
        "Imbalanced binary outputs: down-weights the many easy examples (alpha=0.25, gamma=2 as in RetinaNet).",
        *CLASSIFY,
        imbalanced=True,
        outputs=("probabilities", "logits"),
        priority=3,
    ),
    rule(
        "weighted_cross_entropy",
        "Imbalanced multi-class: weight each class, e.g. by inverse frequency.",
        *CLASSIFY,
        imbalanced=True,
        outputs=("probabilities", "logits"),
        priority=3,
    ),
    rule(
        "categorical_focal",
        "Imbalanced multi-class with many easy examples: focal loss over classes.",
        *CLASSIFY,
        imbalanced=True,
        outputs=("probabilities", "logits"),
        priority=2,
    ),
    rule(
        "binary_cross_entropy",
        "Imbalanced binary outputs: pos_weight raises the cost of missed positives.",
        *CLASSIFY,
        imbalanced=True,
        outputs=("probabilities", "logits"),
        priority=1,
    ),
    rule("hinge", "Max-margin binary classification on raw scores (SVM-style).", *CLASSIFY, outputs=("logits",)),
    rule("squared_hinge", "Max-margin with a smooth gradient.", *CLASSIFY, outputs=("logits",)),
    rule("categorical_hinge", "Max-margin multi-class on raw scores.", *CLASSIFY, outputs=("logits",)),
    rule(
        "multi_margin", "Multi-class margin loss on raw scores (torch MultiMarginLoss).", *CLASSIFY, outputs=("logits",)
    ),
    rule(
        "soft_margin", "Binary -1/1 labels on raw scores: the logistic (soft) margin.", *CLASSIFY, outputs=("logits",)
    ),
    rule(
        "multilabel_soft_margin",
        "Multi-label logits with per-class weights (torch MultiLabelSoftMarginLoss).",
        *CLASSIFY,
        outputs=("logits",),
    ),
    rule(
        "kl_divergence",
        "Matching a target distribution (distillation, VAEs).",
        *CLASSIFY,
        outputs=("probabilities", "logits"),
    ),
    rule("nll", "Outputs are already log-probabilities (log-softmax layer).", *CLASSIFY),
    # Metric learning.
    rule("triplet", "Embeddings with anchor, positive and negative examples.", "ranking", priority=3),
    rule("contrastive", "Embeddings from pairs labelled similar or dissimilar.", "ranking", priority=2),
    rule("cosine_embedding", "Pairs of embeddings compared by angle, not length.", "ranking", priority=1),
    rule("margin_ranking", "Ranking pairs of scores (learning to rank).", "ranking"),
    rule(
        "supcon",
        "A labelled batch of embeddings: every same-label pair a positive (supervised contrastive).",
        "ranking",
        priority=2,
    ),
    rule(
        "triplet_semihard",
        "Labelled embeddings, triplets mined in the batch (FaceNet's semi-hard negatives).",
        "ranking",
        priority=2,
    ),
    rule(
        "arcface", "Many identities (faces, re-identification): angular margin on cosine logits.", "ranking", priority=2
    ),
    rule(
        "nt_xent",
        "Self-supervised: two augmented views per sample, in-batch negatives (SimCLR).",
        "ranking",
        priority=1,
    ),
    rule("triplet_hard", "Labelled P x K batches: the hardest positive and negative per anchor.", "ranking"),
    rule("circle", "Pair similarities weighted by their distance from the optimum (retrieval).", "ranking"),
    rule("cosface", "Many identities: a cosine margin on cosine logits (CosFace).", "ranking"),
    rule("hinge_embedding", "Pair distances labelled similar or dissimilar: pushes dissimilar pairs apart.", "ranking"),
    # Sequences, masks, generation.
    rule(
        "ctc", "Unaligned sequences: CTC sums over every alignment of the labels to the frames.", "sequence", priority=3
    ),
    rule(
        "dice",
        "Segmentation masks: overlap-based, robust to foreground/background imbalance.",
        "segmentation",
        priority=3,
    ),
    rule("iou", "Segmentation masks scored by intersection over union (Jaccard).", "segmentation", priority=2),
    rule(
        "dice_ce",
        "Medical segmentation (MONAI DiceCELoss, nnU-Net's Dice + CE): Dice for the overlap plus pixel-wise "
        "cross-entropy, which gives every pixel a gradient early in training.",
        "segmentation",
        priority=2,
    ),
    rule(
        "channel_cross_entropy",
        "Multi-class segmentation on channel-first logits (U-Net): cross-entropy at every pixel, label maps accepted.",
        "segmentation",
        priority=1,
        params={"from_logits": True},
    ),
    rule(
        "tversky",
        "Segmentation with imbalance: beta > alpha penalises missed foreground more.",
        "segmentation",
        imbalanced=True,
        priority=3,
        params={"alpha": 0.3, "beta": 0.7},
    ),
    rule(
        "tversky",
        "Segmentation trading false positives against false negatives (alpha, beta).",
        "segmentation",
        imbalanced=False,
    ),
    rule(
        "generalized_dice",
        "Multi-class segmentation with very unequal class sizes: inverse-volume class weights (Sudre et al.).",
        "segmentation",
        imbalanced=True,
        priority=2,
    ),
    rule(
        "focal_tversky",
        "Small lesions: Tversky favouring recall, with an exponent below 1 that sharpens the nearly-right classes "
        "(Abraham & Khan's gamma = 4/3).",
        "segmentation",
        imbalanced=True,
        priority=1,
        params={"alpha": 0.3, "beta": 0.7, "gamma": 0.75},
    ),
    rule(
        "lovasz_softmax",
        "Multi-class segmentation scored by mean IoU: a convex surrogate of the Jaccard loss, often used to "
        "fine-tune after cross-entropy.",
        "segmentation",
        priority=1,
    ),
    rule("lovasz_hinge", "Binary segmentation on logits, scored by IoU: the Lovász hinge.", "segmentation"),
    rule("wasserstein", "GAN training with a critic (WGAN): gradients that do not vanish.", "generative", priority=2),
    rule("adversarial", "Standard GAN objectives (non-saturating, hinge, least squares).", "generative", priority=2),
    rule("ssim", "Images judged by local structure rather than pixel error.", "generative", priority=1),
    rule("ms_ssim", "Images judged by structure across scales (MS-SSIM; at least 161 px a side).", "generative"),
    rule("perceptual", "Images judged by a feature extractor's representation (LPIPS-style).", "generative"),
    rule("earth_movers", "Distributions over ordered bins (histograms, ordinal targets).", "generative"),
)


@dataclass(frozen=True)
class Recommendation:
    name: str
    reason: str
    params: dict[str, Any]


def recommend(query: Query, registry: Registry = REGISTRY) -> list[Recommendation]:
    """Applicable rules for the losses the registry has, best first (ties: table order)."""
    query = query.normalised()
    scored = [(score, index, r) for index, r in enumerate(RULES) if (score := r.score(query)) is not None]
    seen: set[str] = set()
    result = []
    for _, _, chosen in sorted(scored, key=lambda item: (-item[0], item[1])):
        spec = registry.get(chosen.loss)
        if spec is None or chosen.loss in seen:
            continue
        seen.add(chosen.loss)
        params = dict(chosen.params)
        if query.output in SCORES and "from_logits" in spec.params.model_fields:
            params["from_logits"] = query.output == "logits"
        result.append(Recommendation(chosen.loss, chosen.reason, params))
    return result
