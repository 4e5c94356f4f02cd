"""Named composites: weighted sums of catalog losses registered as losses of their own, with a
card derived from their terms. ``dice_bce``, ``focal_dice`` and ``dice_ce`` ship; operators add more with
``LOSSD_COMPOSITES`` (see service.settings)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from pydantic import Field

from kernels.classification import ChannelCrossEntropyParams, binary_cross_entropy, channel_cross_entropy
from kernels.composite import CompositeSpec, Term, field_inputs, proto_kernel, term
from kernels.curves import Curve, channel_true_class
from kernels.imbalance import focal
from kernels.segmentation import dice
from kernels.spec import REGISTRY, Card, KernelFunction, NoParams, Params, Properties, Registry, Task

ORDER_PRESERVING = ("robust_to_outliers", "smooth_gradient", "differentiable")
"""Claims that hold for any weighted sum of losses that all have them: a bounded, a Lipschitz
and an existing gradient stay so under any linear combination."""
POSITIVE_ONLY = ("convex", "bounded_below")
"""Claims that a sum keeps only when no weight is negative."""


def properties(terms: Sequence[Term]) -> Properties:
    """What the combination may claim: the AND of its terms' claims where that is sound."""
    claims: dict[str, bool | str | None] = {
        name: all(getattr(t.spec.properties, name) for t in terms) for name in ORDER_PRESERVING
    }
    nonnegative = all(t.weight >= 0 for t in terms)
    for name in POSITIVE_ONLY:
        claims[name] = nonnegative and all(getattr(t.spec.properties, name) for t in terms)
    only = terms[0].spec.properties.probabilistic_interpretation if len(terms) == 1 else None
    claims["probabilistic_interpretation"] = only
    return Properties.model_validate(claims)


def _latex_name(name: str) -> str:
    return r"\ell_{\text{" + name.replace("_", r"\_") + "}}"


def formula(terms: Sequence[Term]) -> str:
    """The weighted sum, e.g. ``\\ell = 1\\,\\ell_{dice} + 1\\,\\ell_{binary\\_cross\\_entropy}``."""
    parts = []
    for index, t in enumerate(terms):
        sign = "-" if t.weight < 0 else ("+" if index else "")
        parts.append(f"{sign} {abs(t.weight):g}\\,{_latex_name(t.spec.name)}".strip())
    return r"\ell = " + " ".join(parts)


def describe(t: Term) -> str:
    """A term as text: weight, loss and the params that differ from the defaults."""
    changed = t.params.model_dump(exclude_defaults=True)
    mapped = {k: v for k, v in t.inputs if k != v}
    extras = [f"params {changed}" if changed else "", f"inputs {mapped}" if mapped else ""]
    detail = "; ".join(e for e in extras if e)
    return f"{t.weight:g} x {t.spec.name}" + (f" ({detail})" if detail else "")


class BatchParams(Params):
    """The one param of a named composite with a batch form (``composite(batch=True)``)."""

    batch: bool = Field(
        False,
        description="MONAI batch: the terms that take it (the overlap losses) sum their statistics over the whole "
        "batch before the ratio, the others are averaged over the whole batch (MONAI's DiceCELoss(batch=True): "
        "its cross-entropy stays a mean over everything); the loss is then one value for the batch (per_sample "
        "is [loss], no sample weights).",
    )


def batch_form(terms: Sequence[Term]) -> tuple[Term, ...]:
    """The terms of a composite's batch form: ``batch`` set where a term's loss takes it, every other
    term pooled (its unweighted mean over the batch)."""
    out = []
    for t in terms:
        param = t.spec.batch_param
        if param is not None:
            out.append(replace(t, params=t.params.model_copy(update={param: True})))
        else:
            out.append(replace(t, pooled=True))
    return tuple(out)


def composite(
    name: str,
    terms: Sequence[Term],
    *,
    title: str | None = None,
    task: Task | None = None,
    summary: str = "",
    aliases: tuple[str, ...] = (),
    use_cases: tuple[str, ...] = (),
    equivalents: dict[str, str] | None = None,
    curve: Curve | None = None,
    claims: Properties | None = None,
    batch: bool = False,
) -> CompositeSpec:
    """A named composite's declaration; its task is the terms' common task unless given, its curve the
    first term curve drawn on its own fields unless given, and ``equivalents`` join the terms'. ``batch`` gives
    it the param ``batch`` (:class:`BatchParams`, its terms' :func:`batch_form`). ``claims``
    replaces the properties derived from the terms' cards (which hold for their default forms) where a term's
    params change them (cross-entropy on logits has a bounded, Lipschitz gradient, on probabilities not)."""
    terms = tuple(terms)
    tasks = {t.spec.task for t in terms}
    if task is None:
        if len(tasks) > 1:
            raise ValueError(f"composite {name}: its terms have tasks {sorted(tasks)}; give its task")
        task = terms[0].spec.task
    fields = field_inputs(terms)
    sums = " + ".join(describe(t) for t in terms)
    card = Card(
        title=title or " + ".join(t.spec.card.title for t in terms),
        summary=(summary + " " if summary else "")
        + f"A weighted sum of catalog losses computed as one graph: {sums}. Each term's own params and "
        "reduction apply; the loss, per-sample losses and gradients are the weighted sums of the terms'. "
        + (
            "Properties are those every term claims (for their default forms), kept where a sum preserves them."
            if claims is None
            else "Properties are those of the terms in the forms used here, kept where a sum preserves them."
        ),
        formula=formula(terms),
        use_cases=use_cases or tuple(t.spec.card.use_cases[0] for t in terms if t.spec.card.use_cases),
        equivalents={
            **(equivalents or {}),
            **{t.spec.name: f"lossd {t.spec.name}, weight {t.weight:g}" for t in terms},
        },
        references=tuple(dict.fromkeys(r for t in terms for r in t.spec.card.references)),
    )

    # A term's curve draws the composite too when its inputs are the composite's fields.
    curves = (
        t.spec.curve
        for t in terms
        if t.spec.curve is not None and set(t.fields) == set(t.fields.values()) == set(fields)
    )
    if curve is None:
        curve = next((replace(c, params={}) for c in curves), None)

    batch_terms = batch_form(terms) if batch else ()

    def kernel(batch: bool = False) -> KernelFunction:
        return proto_kernel(name, batch_terms if batch else terms)

    return CompositeSpec(
        name=name,
        task=task,
        inputs=tuple(fields.values()),
        params=BatchParams if batch else NoParams,
        properties=claims if claims is not None else properties(terms),
        card=card,
        kernel=kernel,
        structural=("batch",) if batch else (),
        aliases=aliases,
        batch_level=terms[0].batch_level,
        batch_param="batch" if batch else None,
        curve=curve,
        variants=((("batch", False),), (("batch", True),)) if batch else ((),),
        terms=terms,
        batch_terms=batch_terms,
        row_wise=all(splits_by_rows(t) for t in terms),
    )


def splits_by_rows(t: Term) -> bool:
    """A term whose per-sample losses depend on their own rows and whose reduction is a weighted sum
    over samples: a composite of such terms runs in row blocks like a row-wise loss (kernels.blocks)."""
    return t.spec.row_wise and not (t.batch_level or t.spec.mass or t.spec.configured)


def register(spec: CompositeSpec, registry: Registry = REGISTRY) -> CompositeSpec:
    """Add a named composite; registering the same definition again (a second app in one
    process) keeps the first, a different one under a taken name is an error."""
    existing = registry.get(spec.name)
    if existing is not None:

        def key(c: CompositeSpec) -> list[object]:
            return [(*t.structure, t.weight, t.params) for t in c.terms]

        same = isinstance(existing, CompositeSpec) and key(existing) == key(spec)
        if isinstance(existing, CompositeSpec) and same and existing.name == spec.name:
            return existing
        raise ValueError(f"composite {spec.name!r}: the name is already taken by another loss")
    registry.add(spec)
    return spec


DICE_BCE = register(
    composite(
        "dice_bce",
        [term(dice, 1.0), term(binary_cross_entropy, 1.0)],
        title="Dice + binary cross-entropy",
        task="segmentation",
        summary="The usual segmentation loss: Dice optimises the overlap, binary cross-entropy gives every "
        "pixel a gradient early in training. Predictions and targets are channel-first probabilities.",
        use_cases=(
            "Binary and multi-label segmentation with a small foreground",
            "Medical image segmentation (as MONAI's DiceCELoss with sigmoid outputs)",
        ),
    )
)
FOCAL_DICE = register(
    composite(
        "focal_dice",
        [term(focal, 1.0), term(dice, 1.0)],
        title="Focal + Dice",
        task="segmentation",
        summary="Focal loss down-weights the easy pixels, Dice optimises the overlap: for segmentation with a "
        "rare foreground. Predictions and targets are channel-first probabilities.",
        use_cases=("Segmentation of small or rare structures", "Lesion and defect segmentation"),
    )
)
DICE_CE = register(
    composite(
        "dice_ce",
        [term(dice, 1.0), term(channel_cross_entropy, 1.0, ChannelCrossEntropyParams(from_logits=True))],
        title="Dice + cross-entropy (MONAI DiceCELoss)",
        task="segmentation",
        summary="MONAI's DiceCELoss with its defaults (lambda_dice = lambda_ce = 1, no activation for the Dice "
        "term): Dice on the predictions as probabilities plus the channel-first cross-entropy over axis 1 of the "
        "same predictions read as logits (torch's CrossEntropyLoss, which applies the log-softmax itself), on "
        "channel-first maps (N, C, ...) with C >= 2. Targets are one-hot (or soft) masks of the same shape, or an "
        "integer label map (N, ...) or (N, 1, ...), expanded to one-hot (MONAI to_onehot_y=True). MONAI's other "
        "flags are the ad-hoc composite (POST /loss/composite) of the same two terms with their params: "
        "softmax=True (the usual form, nnU-Net's loss) is dice with activation 'softmax' plus "
        "channel_cross_entropy with from_logits true; sigmoid=True is dice with activation 'sigmoid'; "
        "include_background, squared_pred, jaccard (iou instead of dice), smooth_nr, smooth_dr and weight "
        "(class_weights on both terms) are the terms' params, lambda_dice and lambda_ce the term weights. For one "
        "channel MONAI uses BCEWithLogitsLoss instead: dice plus binary_cross_entropy with from_logits true. "
        "params.batch true is MONAI's DiceCELoss(batch=True): the Dice statistics are summed over the batch before "
        "the ratio (one Dice per class for the whole batch) and the cross-entropy stays its mean over every sample "
        "and position, so the loss is one value for the batch (per_sample is [loss], no sample weights); the ad-hoc "
        "composite cannot mix a batch-level dice with a per-sample cross-entropy, only this named form does.",
        use_cases=(
            "Medical image segmentation (MONAI DiceCELoss, nnU-Net's Dice + CE)",
            "Multi-class segmentation where Dice alone trains slowly at the start",
        ),
        equivalents={
            "monai": "monai.losses.DiceCELoss() (defaults; matched): reduction='mean' is our mean (Dice averaged "
            "over samples and classes plus CE averaged over samples and positions); MONAI's reduction='sum' sums "
            "the Dice over samples and classes and the CE over samples and positions, ours the per-sample losses "
            "(each term's own mean over its classes or positions). The other flags: the ad-hoc composite, above. "
            "DiceCELoss(batch=True) is params.batch true (reduction='mean' matched; MONAI's 'sum' then sums the "
            "batch Dice over the classes and the CE over samples and positions, ours is the same one value as "
            "'mean').",
        },
        curve=channel_true_class(),
        batch=True,
        # Dice's claims and cross-entropy's on logits: a gradient bounded by 1 (softmax - y) with a Lipschitz
        # constant of 1/2, so the sum keeps Dice's robustness and smoothness; not convex (Dice is not).
        claims=Properties(
            robust_to_outliers=True,
            smooth_gradient=True,
            convex=False,
            differentiable=True,
            bounded_below=True,
            probabilistic_interpretation=None,
        ),
    )
)
