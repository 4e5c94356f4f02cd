"""Composite graphs: the weighted sum of the terms computed separately, one graph per structure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from kernels import REGISTRY
from kernels.composite import Term, check_terms, term
from kernels.composite_sessions import CompositeSessions
from kernels.composites import DICE_BCE, FOCAL_DICE, composite, formula, properties
from kernels.graph import ROW_WISE, GraphKey, build_model
from kernels.runtime import session_options
from kernels.spec import InvalidInput
from tests.kernels.harness import evaluate

Arrays = dict[str, np.ndarray]


def spec_term(name: str, weight: float, params: dict[str, Any] | None = None, **inputs: str) -> Term:
    spec = REGISTRY.get(name)
    assert spec is not None, name
    return term(spec, weight, spec.params(**(params or {})), **inputs)


def masks(rng: np.random.Generator) -> Arrays:
    return {
        "predictions": rng.uniform(0.05, 0.95, (2, 3, 2, 3)),
        "targets": (rng.random((2, 3, 2, 3)) < 0.4).astype(np.float64),
    }


def regression(rng: np.random.Generator) -> Arrays:
    targets = rng.normal(size=(3, 4))
    return {
        "predictions": targets + rng.choice([-1.0, 1.0], (3, 4)) * rng.uniform(0.1, 2.0, (3, 4)),
        "targets": targets,
    }


def logit_maps(rng: np.random.Generator) -> Arrays:
    return {"predictions": rng.normal(0.0, 2.0, (2, 3, 4)), "targets": (rng.random((2, 3, 4)) < 0.5) * 1.0}


def labelled_scores(rng: np.random.Generator) -> Arrays:
    return {"predictions": rng.normal(size=(4, 3)), "targets": rng.integers(0, 3, 4)}


def embeddings(rng: np.random.Generator) -> Arrays:
    return {
        "a": rng.normal(size=(4, 5)),
        "b": rng.normal(size=(4, 5)),
        "targets": np.array([1.0, 0.0, 1.0, 0.0]),
        "signs": np.array([1.0, -1.0, -1.0, 1.0]),
    }


def gan_scores(rng: np.random.Generator) -> Arrays:
    return {"real_scores": rng.normal(1.0, 1.0, 4), "fake_scores": rng.normal(-1.0, 1.0, 6)}


COMPOSITIONS: dict[str, tuple[Callable[[], list[Term]], Callable[[np.random.Generator], Arrays]]] = {
    "dice+bce": (lambda: [spec_term("dice", 0.5), spec_term("bce", 0.5)], masks),
    "mse+mae+huber": (
        lambda: [spec_term("mse", 1.0), spec_term("mae", 2.0), spec_term("huber", 0.25, {"delta": 0.5})],
        regression,
    ),
    "focal+bce+dice on logits (layouts differ)": (
        lambda: [
            spec_term("focal", 0.7, {"from_logits": True}),
            spec_term("bce", 0.3, {"from_logits": True, "pos_weight": 2.0}),
            spec_term("dice", 1.0, {"activation": "sigmoid"}),
        ],
        logit_maps,
    ),
    "class-weighted cross-entropy+multi_margin (int labels, mass)": (
        lambda: [
            spec_term("sparse_cross_entropy", 1.0, {"from_logits": True, "class_weights": [1.0, 2.0, 0.5]}),
            spec_term("multi_margin", 0.5),
        ],
        labelled_scores,
    ),
    "contrastive+cosine_embedding (mapped inputs)": (
        lambda: [
            spec_term("contrastive", 1.0, x1="a", x2="b"),
            spec_term("cosine_embedding", -0.5, {"margin": 0.1}, x1="a", x2="b", targets="signs"),
        ],
        embeddings,
    ),
    "wasserstein+adversarial (batch level)": (
        lambda: [
            spec_term("wasserstein", 1.0),
            spec_term("adversarial", 0.5, real_logits="real_scores", fake_logits="fake_scores"),
        ],
        gan_scores,
    ),
    "wasserstein+adversarial (batch level, TF-GAN score weights)": (
        lambda: [
            spec_term("wasserstein", 1.0),
            spec_term("adversarial", 0.5, real_logits="real_scores", fake_logits="fake_scores"),
        ],
        lambda rng: {
            **gan_scores(rng),
            "real_weights": np.array([0.0, 1.0, 2.5, 0.5]),
            "fake_weights": rng.uniform(0.2, 2.0, 6),
        },
    ),
}
TOLERANCE = {"float64": 1e-10, "float32": 2e-5}
SESSIONS = CompositeSessions(session_options(1), ["CPUExecutionProvider"], size=8)


def separately(terms: list[Term], fields: Arrays, reduction: str, weights: Any, dtype: Any) -> tuple[Any, ...]:
    """Each term through its own catalog graph, combined in numpy."""
    loss: Any = 0.0
    per_sample: Any = 0.0
    gradients: dict[str, Any] = {}
    values = []
    for t in terms:
        own = {name: fields[field] for name, field in t.inputs if field in fields}  # optional inputs may be left out
        result = evaluate(t.spec.name, own, t.params.model_dump(), reduction=reduction, weights=weights, dtype=dtype)
        values.append(result.loss)
        loss = loss + t.weight * np.asarray(result.loss, np.float64)
        per_sample = per_sample + t.weight * np.asarray(result.per_sample, np.float64)
        for name, grad in result.gradients.items():
            field = t.fields[name]
            gradients[field] = gradients.get(field, 0.0) + t.weight * np.asarray(grad, np.float64)
    return loss, per_sample, gradients, values


def close(actual: Any, expected: Any, dtype: str, what: str) -> None:
    expected = np.asarray(expected, np.float64)
    scale = max(float(np.max(np.abs(expected))), 1e-12)
    np.testing.assert_allclose(
        np.asarray(actual, np.float64), expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype] * scale, err_msg=what
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("composition", list(COMPOSITIONS))
def test_composite_is_the_weighted_sum_of_its_terms(composition: str, reduction: Any, dtype: Any) -> None:
    make_terms, make_inputs = COMPOSITIONS[composition]
    terms = make_terms()
    fields = make_inputs(np.random.default_rng(len(composition)))
    batch_level = terms[0].spec.batch_level
    first = next(iter(fields.values()))
    weights = None if batch_level or reduction == "none" else np.linspace(0.5, 2.0, first.shape[0])
    got, values = SESSIONS.evaluate(terms, fields, reduction=reduction, weights=weights, dtype=dtype)
    loss, per_sample, gradients, term_values = separately(terms, fields, reduction, weights, dtype)
    close(got.loss, loss, dtype, "loss")
    close(got.per_sample, per_sample, dtype, "per_sample")
    for index, value in enumerate(term_values):
        close(values[index], value, dtype, f"terms[{index}]")
    assert set(got.gradients) == set(gradients)
    for field, gradient in gradients.items():
        assert got.gradients[field].shape == fields[field].shape
        close(got.gradients[field], gradient, dtype, f"gradient wrt {field}")


@pytest.mark.parametrize(
    "composition", ["focal+bce+dice on logits (layouts differ)", "contrastive+cosine_embedding (mapped inputs)"]
)
def test_gradients_match_finite_differences(composition: str) -> None:
    make_terms, make_inputs = COMPOSITIONS[composition]
    terms = make_terms()
    fields = make_inputs(np.random.default_rng(3))
    weights = np.linspace(0.5, 2.0, next(iter(fields.values())).shape[0])
    got, _ = SESSIONS.evaluate(terms, fields, weights=weights)
    step = 1e-6
    for field, analytic in got.gradients.items():
        numeric = np.zeros_like(fields[field])
        for index in np.ndindex(numeric.shape):
            values = []
            for sign in (1.0, -1.0):
                moved = fields[field].copy()
                moved[index] += sign * step
                result, _ = SESSIONS.evaluate(terms, {**fields, field: moved}, weights=weights, gradients=False)
                values.append(float(result.loss))
            numeric[index] = (values[0] - values[1]) / (2 * step)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7 * float(np.max(np.abs(numeric))))


def test_a_repeated_structure_is_one_graph_and_one_run_per_evaluation() -> None:
    sessions = CompositeSessions(session_options(1), ["CPUExecutionProvider"], size=2)
    fields = masks(np.random.default_rng(0))
    sessions.evaluate([spec_term("dice", 0.5), spec_term("bce", 0.5)], fields)
    assert (sessions.builds, sessions.runs) == (1, 1)
    # other weights and non-structural param values: the same graph, fed differently
    reweighted = [spec_term("dice", 2.0, {"smooth_nr": 0.1}), spec_term("bce", 0.1, {"eps": 1e-5})]
    first, _ = sessions.evaluate(reweighted, fields)
    assert (sessions.builds, sessions.runs) == (1, 2)
    again, _ = sessions.evaluate(reweighted, fields)
    assert (sessions.builds, sessions.runs) == (1, 3) and float(first.loss) == float(again.loss)
    # a structural param selects another graph; the cache keeps at most `size` of them
    sessions.evaluate([spec_term("dice", 0.5, {"squared_pred": True}), spec_term("bce", 0.5)], fields)
    sessions.evaluate([spec_term("dice", 0.5), spec_term("mse", 0.5)], fields)
    assert sessions.builds == 3 and len(sessions) == 2


@pytest.mark.parametrize(
    ("terms", "field", "message"),
    [
        (lambda: [spec_term("mse", 1.0), spec_term("wasserstein", 1.0)], "terms[1].loss", "whole batch"),
        (lambda: [spec_term("sparse_cross_entropy", 1.0), spec_term("mse", 1.0)], "terms[1].loss", "different dtypes"),
        (
            lambda: [spec_term("cross_entropy", 1.0), spec_term("dice", 1.0)],
            "terms[1].loss",
            "incompatible",
        ),
        (
            lambda: [spec_term("margin_ranking", 1.0, x1="x"), spec_term("triplet", 1.0, anchor="x")],
            "terms[1].inputs.anchor",
            "shape",
        ),
        (lambda: [spec_term("mse", 1.0), spec_term("dice_bce", 1.0)], "terms[1].loss", "composite"),
        (lambda: [spec_term("perceptual", 1.0)], "terms[0].loss", "configured"),
    ],
)
def test_compositions_that_cannot_be_one_graph(terms: Callable[[], list[Term]], field: str, message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        check_terms(terms())
    assert raised.value.field == field and message in raised.value.detail


def test_named_composite_cards_derive_from_their_terms() -> None:
    assert DICE_BCE.task == "segmentation" and [t.spec.name for t in DICE_BCE.terms] == ["dice", "binary_cross_entropy"]
    claims = DICE_BCE.properties
    assert claims.differentiable and claims.bounded_below  # both terms claim them
    assert not claims.smooth_gradient and not claims.convex  # one term does not
    assert DICE_BCE.card.formula == r"\ell = 1\,\ell_{\text{dice}} + 1\,\ell_{\text{binary\_cross\_entropy}}"
    assert FOCAL_DICE.differentiable == ("predictions",)
    negative = [spec_term("mse", 1.0), spec_term("mae", -0.5)]
    assert not properties(negative).convex and properties(negative).differentiable is False
    assert formula(negative) == r"\ell = 1\,\ell_{\text{mse}} - 0.5\,\ell_{\text{mae}}"


@pytest.mark.parametrize(
    ("terms", "split"),
    [
        ([("dice", {}), ("binary_cross_entropy", {})], True),
        ([("mse", {}), ("mae", {})], True),
        ([("mse", {}), ("hinge", {})], False),  # hinge's label rule looks at the whole batch
        ([("sparse_cross_entropy", {}), ("nll", {})], False),  # means over masses, not samples
        ([("dice", {"batch": True}), ("iou", {"batch": True})], False),  # one value for the whole batch
    ],
)
def test_named_composites_run_in_row_blocks_when_every_term_can(terms: list[Any], split: bool) -> None:
    """A composite's own reduction is the weighted sum of its terms': blocks of rows add up to one run
    exactly when each term's do (tests/kernels/test_blocks.py checks the shipped ones value by value)."""
    named = composite("split_check", [spec_term(name, 1.0, params) for name, params in terms], task="regression")
    assert named.row_wise is split
    key = GraphKey(named.name, (), "float64", False)
    props = {p.key: p.value for p in build_model(named, key).metadata_props}
    assert (props[ROW_WISE] == "true") is split


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_named_composite_graph_equals_the_ad_hoc_one(dtype: Any) -> None:
    fields = masks(np.random.default_rng(5))
    named = evaluate("dice_bce", fields, reduction="none", dtype=dtype)
    ad_hoc, _ = SESSIONS.evaluate(list(DICE_BCE.terms), fields, reduction="none", dtype=dtype)
    close(named.per_sample, ad_hoc.per_sample, dtype, "per_sample")
    close(named.gradients["predictions"], ad_hoc.gradients["predictions"], dtype, "gradient")
