"""Every pair of catalog losses the composite rules accept builds as one graph and equals the
weighted sum of its terms run alone (loss, per-sample losses, term values and gradients), in
both dtypes.

The pairs come from the registry and ``check_terms`` (each term's inputs under their own
names), so a loss added later is paired with every other one automatically. Inputs are drawn
from the declarations (shapes from the fields' layouts, values from the intersection of what
every term that reads a field accepts) and checked the way the service checks a composite
request (``service.terms.decode_terms``); a draw that fails that check is drawn again. The
terms alone run through ``tests.kernels.harness.on_demand`` (each catalog graph built on first
use). The cost is building the pairs' graphs, two per pair: about 0.15 s of CPU each, mostly
onnxscript's optimizer (some 2 minutes for the whole table).
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from kernels import REGISTRY
from kernels.composite import Term, build_model, check_terms, field_inputs, term
from kernels.composite_sessions import CompositeSessions
from kernels.composites import composite
from kernels.graph import Functions
from kernels.reduction import reduce_loss
from kernels.runtime import session_options
from kernels.segmentation import ratio_kernel, tversky_kernel
from kernels.spec import Input, InvalidInput, LossSpec, Params
from service.errors import ServiceError
from service.terms import decode_terms
from tests.kernels.catalog import info
from tests.kernels.harness import on_demand
from tests.kernels.test_composite import TOLERANCE, spec_term

Arrays = dict[str, np.ndarray]

SIZES = {"N": 3, "C": 3, "K": 4, "D": 3, "M": 4, "T": 4, "S": 4, "H": 33, "W": 33, "4": 4}
"""Shape symbols' sizes (others: 3). T = S: a loss that reads CTC's (N, T, C) predictions and
(N, S) targets with one "..." (sparse cross-entropy) needs them equal; H, W: SSIM's window and MS-SSIM's four
halvings (more than (3 - 1) * 16 with the window 3 of its declaration's params); "4": the box losses'
(x1, y1, x2, y2)."""
WEIGHTS = (0.75, -1.5)
DRAWS = 20


def default_params(spec: LossSpec) -> Params | None:
    try:
        return spec.params(**info(spec.name).property_params)
    except ValidationError:
        return None


def accepted_pairs() -> list[tuple[str, str]]:
    """Unordered pairs (a loss with itself included) whose default terms ``check_terms`` accepts."""
    specs = [s for s in REGISTRY if default_params(s) is not None]
    pairs = []
    for a, b in itertools.combinations_with_replacement(specs, 2):
        try:
            check_terms(pair_terms(a.name, b.name))
        except InvalidInput:
            continue
        pairs.append((a.name, b.name))
    return pairs


def pair_terms(a: str, b: str) -> list[Term]:
    terms = []
    for name, weight in zip((a, b), WEIGHTS, strict=True):
        spec = REGISTRY.get(name)
        assert spec is not None
        params = default_params(spec)
        assert params is not None, name
        terms.append(term(spec, weight, params))
    return terms


def _shape(layout: tuple[str, ...], ellipsis: tuple[int, ...]) -> tuple[int, ...]:
    shape: list[int] = []
    for dim in layout:
        shape.extend(ellipsis if dim == "..." else (SIZES.get(dim, 3),))
    return tuple(shape)


def _floats(uses: Sequence[tuple[Term, Input]], shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Values every use accepts: the intersection of their ranges and allowed values."""
    low, high = -math.inf, math.inf
    allowed: set[float] | None = None
    for t, x in uses:
        if x.relaxed_by is not None and getattr(t.params, x.relaxed_by):
            pass
        elif x.holds_probabilities(t.params):
            low, high = max(low, 0.0), min(high, 1.0)
        elif x.kind == "nonnegative":
            low = max(low, 0.0)
        elif x.kind == "cosine":
            low, high = max(low, -1.0), min(high, 1.0)
        if x.allowed is not None:
            allowed = set(x.allowed) if allowed is None else allowed & set(x.allowed)
    if allowed is not None:
        choices = sorted(v for v in allowed if low <= v <= high)
        assert choices, f"no value is allowed by every use of {[x.name for _, x in uses]}"
        return rng.choice(choices, shape)
    if low >= 0.0 and high <= 1.0:
        return rng.uniform(0.05, 0.95, shape)
    if low >= -1.0 and high <= 1.0:
        return rng.uniform(-0.95, 0.95, shape)
    if low >= 0.0:
        return rng.uniform(0.1, 3.0, shape)
    return rng.normal(0.0, 1.5, shape)


def _integers(uses: Sequence[tuple[Term, Input]], shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    x = uses[0][1]
    if x.kind == "count":
        assert x.bound is not None
        return rng.integers(0, SIZES.get(x.bound, 3) + 1, shape)
    return rng.integers(1, SIZES["C"], shape)  # labels, none 0 (CTC's default blank)


def shapes(terms: Sequence[Term], ellipsis: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Each field's shape at its layout, "..." standing for ``ellipsis``, except where a term
    has already bound its "..." through another field (fields with more named axes first):
    then the field takes that term's binding, as the term's own inputs must agree."""
    layouts = {f: x.shape for f, x in field_inputs(terms).items()}
    readers: dict[str, list[tuple[int, Input]]] = {}
    for index, t in enumerate(terms):
        for x in t.spec.inputs:
            readers.setdefault(t.fields[x.name], []).append((index, x))
    bound: dict[int, tuple[int, ...]] = {}
    result = {}
    for field in sorted(layouts, key=lambda f: -sum(d != "..." for d in layouts[f])):
        layout = layouts[field]
        own = [bound[i] for i, x in readers[field] if i in bound and x.shape == layout and "..." in layout]
        shape = result[field] = _shape(layout, own[0] if own else ellipsis)
        for index, x in readers[field]:
            if index not in bound and "..." in x.shape:
                before = x.shape.index("...")
                bound[index] = shape[before : len(shape) - (len(x.shape) - before - 1)]
    return result


def draw(terms: Sequence[Term], rng: np.random.Generator, ellipsis: tuple[int, ...]) -> Arrays:
    uses: dict[str, list[tuple[Term, Input]]] = {}
    for t in terms:
        for x in t.spec.inputs:
            uses.setdefault(t.fields[x.name], []).append((t, x))
    fields = {}
    for field, shape in shapes(terms, ellipsis).items():
        integer = field_inputs(terms)[field].integer
        fields[field] = (_integers if integer else _floats)(uses[field], shape, rng)
        if shape[-1:] == (4,) and any(x.shape[-1:] == ("4",) for _, x in uses[field]):
            corners = fields[field].reshape(-1, 2, 2)  # boxes: x1 <= x2 and y1 <= y2
            fields[field] = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1).reshape(shape)
    return {f: fields[f] for f in uses}


def pair_inputs(terms: Sequence[Term], seed: int) -> Arrays:
    """Fields the service accepts for these terms ("..." one axis, or none)."""
    rng = np.random.default_rng(seed)
    problems = []
    for _ in range(DRAWS):
        for ellipsis in ((2,), ()):
            fields = draw(terms, rng, ellipsis)
            try:
                decode_terms(terms, fields, np.float64, 10**7)
            except ServiceError as problem:
                problems.append(problem.detail)
                continue
            return fields
    raise AssertionError(f"no valid inputs drawn for {[t.spec.name for t in terms]}: {sorted(set(problems))}")


PAIRS = accepted_pairs()
SESSIONS = CompositeSessions(session_options(1), ["CPUExecutionProvider"], size=4)


def alone(terms: Sequence[Term], fields: Arrays, reduction: Any, weights: Any, dtype: Any) -> dict[str, Any]:
    """Each term through its own catalog graph, combined in numpy: the weighted sums, and
    the sums of the terms' magnitudes (the scale a sum's rounding is relative to: the terms of
    mae + quantile at tau = 1/2 with weights 1 and -2 cancel exactly)."""
    runtime = on_demand()
    sums: dict[str, Any] = {}
    sizes: dict[str, Any] = {}
    values = []
    for t in terms:
        own = {name: fields[field] for name, field in t.inputs}
        result = runtime.evaluate(t.spec, own, t.params, reduction=reduction, weights=weights, dtype=dtype)
        values.append(result.loss)
        parts = {"loss": result.loss, "per_sample": result.per_sample}
        parts |= {f"gradient wrt {t.fields[name]}": grad for name, grad in result.gradients.items()}
        for what, value in parts.items():
            weighted = t.weight * np.asarray(value, np.float64)
            sums[what] = sums.get(what, 0.0) + weighted
            sizes[what] = sizes.get(what, 0.0) + np.abs(weighted)
    return {"sums": sums, "sizes": sizes, "values": values}


def close(actual: Any, expected: Any, size: Any, dtype: str, what: str) -> None:
    tolerance = TOLERANCE[dtype]
    scale = max(float(np.max(size)), 1e-12)
    np.testing.assert_allclose(
        np.asarray(actual, np.float64), expected, rtol=tolerance, atol=tolerance * scale, err_msg=what
    )


def check_sum(terms: list[Term], fields: Arrays, dtype: Any, reduction: Any = "mean") -> None:
    """The composite's outputs against each term through its own catalog graph."""
    batch_level = terms[0].spec.batch_level
    count = next(iter(fields.values())).shape[0]
    weights = None if batch_level or reduction == "none" else np.linspace(0.5, 2.0, count)
    got, values = SESSIONS.evaluate(terms, fields, reduction=reduction, weights=weights, dtype=dtype)
    expected = alone(terms, fields, reduction, weights, dtype)
    sums, sizes = expected["sums"], expected["sizes"]
    outputs = {"loss": got.loss, "per_sample": got.per_sample}
    outputs |= {f"gradient wrt {field}": gradient for field, gradient in got.gradients.items()}
    assert set(outputs) == set(sums)
    for what, value in outputs.items():
        assert np.shape(value) == np.shape(sums[what]), what
        close(value, sums[what], sizes[what], dtype, what)
    for index, (t, value) in enumerate(zip(terms, expected["values"], strict=True)):
        close(values[index], value, np.abs(value), dtype, f"terms[{index}] ({t.spec.name})")


def test_every_loss_has_default_params() -> None:
    missing = [s.name for s in REGISTRY if default_params(s) is None]
    assert not missing, f"declare the params these losses need (property_params in tests/kernels/catalog): {missing}"


def test_the_pairs_cover_the_catalog() -> None:
    """Every loss that can be a term at all is in some pair; the rules' rejections stay rejections."""
    paired = {name for pair in PAIRS for name in pair}
    terms = {s.name for s in REGISTRY if default_params(s) is not None}
    alone = set()
    for name in terms:
        try:
            check_terms(pair_terms(name, name)[:1])
        except InvalidInput:
            alone.add(name)  # a composite or configured loss: never a term
    assert paired == terms - alone
    assert ("dice", "tversky") in PAIRS and ("iou", "tversky") in PAIRS


@pytest.mark.parametrize("pair", PAIRS, ids=["+".join(p) for p in PAIRS])
def test_pair_is_the_weighted_sum_of_its_terms(pair: tuple[str, str]) -> None:
    terms = pair_terms(*pair)
    fields = pair_inputs(terms, zlib.crc32("+".join(pair).encode()))
    for dtype in ("float32", "float64"):
        check_sum(terms, fields, dtype)


MASKS_1_4_5_10 = {
    "predictions": np.random.default_rng(18).uniform(0.05, 0.95, (1, 4, 5, 10)),
    "targets": (np.random.default_rng(19).random((1, 4, 5, 10)) < 0.4).astype(np.float64),
}
SHARED_KERNELS: dict[str, list[tuple[str, float, dict[str, Any]]]] = {
    "dice+bce+tversky+focal": [("dice", 1.0, {}), ("bce", 0.5, {}), ("tversky", 0.25, {}), ("focal", 2.0, {})],
    "dice+tversky+iou": [("dice", 1.0, {}), ("tversky", 0.5, {"alpha": 0.3, "beta": 0.7}), ("iou", -0.5, {})],
    "dice two ways (activations)": [("dice", 1.0, {}), ("dice", 0.5, {"activation": "sigmoid"})],
    "overlaps, variants differ": [
        ("tversky", 1.0, {"activation": "softmax", "include_background": False}),
        ("iou", 0.5, {"activation": "sigmoid", "squared_pred": True}),
        ("dice", 2.0, {"activation": "softmax", "include_background": False}),
    ],
}
"""Terms whose kernels share function names (overlap_kernel, probabilities, backward, ...),
on the issue's (1, 4, 5, 10) channel-first input."""


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("composition", list(SHARED_KERNELS))
def test_terms_sharing_kernel_functions(composition: str, reduction: Any) -> None:
    terms = [spec_term(name, weight, params) for name, weight, params in SHARED_KERNELS[composition]]
    decode_terms(terms, MASKS_1_4_5_10, np.float64, 10**7)
    for dtype in ("float32", "float64"):
        check_sum(terms, MASKS_1_4_5_10, dtype, reduction)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_named_composite_of_terms_sharing_kernel_functions(dtype: Any) -> None:
    """A named composite is one function calling its terms' (renamed) kernels; a model built
    around it keeps them apart too."""
    terms = [spec_term(name, weight, params) for name, weight, params in SHARED_KERNELS["overlaps, variants differ"]]
    named = composite("overlaps_test", terms)
    got = on_demand().evaluate(named, MASKS_1_4_5_10, reduction="none", dtype=dtype)
    ad_hoc, _ = SESSIONS.evaluate(terms, MASKS_1_4_5_10, reduction="none", dtype=dtype)
    scale = float(np.max(np.abs(ad_hoc.per_sample)))
    tolerance = TOLERANCE[dtype]
    np.testing.assert_allclose(got.per_sample, ad_hoc.per_sample, rtol=tolerance, atol=tolerance * scale)
    gradient = ad_hoc.gradients["predictions"]
    np.testing.assert_allclose(
        got.gradients["predictions"], gradient, rtol=tolerance, atol=tolerance * float(np.max(np.abs(gradient)))
    )


def test_functions_keep_same_named_kernels_apart() -> None:
    functions = Functions()
    dice = functions.add(ratio_kernel(False, "none", False, True, False))
    iou = functions.add(ratio_kernel(True, "none", False, True, False))
    tversky = functions.add(tversky_kernel("sigmoid", True, False))
    assert dice == ("lossd", "overlap_kernel") and len({dice, iou, tversky}) == 3
    assert functions.add(ratio_kernel(False, "none", False, True, False)) == dice  # one function, added once
    assert functions.add(reduce_loss) == functions.add(reduce_loss) == ("lossd", "reduce_loss")
    protos = {(p.domain, p.name): p for p in functions.protos}
    assert len(protos) == len(functions.protos)
    for proto in protos.values():  # every call reaches a function of the model, or a standard op
        for node in proto.node:
            assert node.domain == "" or (node.domain, node.op_type) in protos, (proto.name, node.op_type)
    # Dice's and Tversky's activations differ: each kernel calls its own `probabilities`
    calls = {k: {n.op_type for n in protos[k].node if n.domain} for k in (dice, tversky)}
    assert calls[dice] & {"probabilities", "probabilities_2"} != calls[tversky] & {"probabilities", "probabilities_2"}
    # protos merged into another model keep their calls, renamed where that model has the names
    other = Functions()
    other.add(tversky_kernel("none", True, False))
    placed = other.merge(functions.protos)
    assert placed[dice] != dice or placed[tversky] != tversky
    merged = {(p.domain, p.name): p for p in other.protos}
    for proto in merged.values():
        for node in proto.node:
            assert node.domain == "" or (node.domain, node.op_type) in merged, (proto.name, node.op_type)


def test_a_composite_that_cannot_be_built_is_invalid_input(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(model: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no")

    monkeypatch.setattr("kernels.composite.onnxscript.optimizer.optimize", broken)
    with pytest.raises(InvalidInput) as raised:
        build_model([spec_term("mse", 1.0), spec_term("mae", 1.0)], "float32", True)
    assert raised.value.field == "terms" and "mse + mae cannot be built as one graph (RuntimeError: no)" in str(
        raised.value
    )
