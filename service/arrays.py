"""Request arrays: JSON lists to numpy, checked against a loss's declared inputs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernels.spec import Input, LossSpec, Params
from service.errors import ServiceError, invalid, too_many_elements
from service.json_arrays import BadArray, from_list


def to_array(field: str, value: Any, dtype: type[np.generic]) -> np.ndarray:
    """A (nested) JSON list as an array; ragged or non-numeric lists are a 422."""
    if isinstance(value, BadArray):
        raise value.error
    if isinstance(value, np.ndarray):  # read from JSON (service.json_arrays) or binary tensors
        if value.size == 0:
            raise invalid(field, "is empty; send at least one sample")
        integers = dtype is np.int64 and value.dtype.kind in "iu"
        if integers and value.dtype == np.uint64 and value.max() > np.iinfo(np.int64).max:  # as int64 it would wrap
            index = first_bad_index(value, value > np.iinfo(np.int64).max)
            raise invalid(
                field,
                f"{value[tuple(index)].item()} at index {index} is beyond the int64 range of lossd's integers "
                f"(at most {np.iinfo(np.int64).max})",
            )
        # Values beyond the dtype's range become inf here; check_finite then names them.
        with np.errstate(over="ignore"):
            return value.astype(np.int64 if integers else np.float64 if dtype is np.int64 else dtype, copy=False)
    if not isinstance(value, list):
        raise invalid(field, f"expected a (nested) list of numbers, got {type(value).__name__}")
    array = from_list(field, value, np.float64 if dtype is np.int64 else dtype)
    if array.size == 0:
        raise invalid(field, "is empty; send at least one sample")
    return array


def first_bad_index(array: np.ndarray, bad: np.ndarray) -> list[int]:
    return [int(i) for i in np.unravel_index(int(np.argmax(bad)), array.shape)]


def check_finite(field: str, array: np.ndarray) -> None:
    # One reduction without a temporary: any NaN or inf makes the sum non-finite (an
    # overflowing sum of finite values only sends us to the exact check below).
    with np.errstate(over="ignore", invalid="ignore"):
        if math.isfinite(np.add.reduce(array, axis=None)):
            return
    finite = np.isfinite(array)
    if not finite.all():
        index = first_bad_index(array, ~finite)
        raise invalid(field, f"non-finite value {array[tuple(index)].item()!r} at index {index}")


def check_range(field: str, array: np.ndarray, low: float, high: float, what: str) -> None:
    """Values in [low, high]; NaN fails the comparison, so this also checks finiteness."""
    if not (array.min() >= low and array.max() <= high):
        check_finite(field, array)
        index = first_bad_index(array, (array < low) | (array > high))
        raise invalid(field, f"{what} must lie in [{low}, {high}]; got {array[tuple(index)].item()!r} at index {index}")


def check_nonnegative(field: str, array: np.ndarray) -> None:
    """Finite values >= 0 (variances, rates, counts that need not be integers)."""
    check_finite(field, array)
    if not array.min() >= 0:
        index = first_bad_index(array, array < 0)
        raise invalid(field, f"values must be non-negative; got {array[tuple(index)].item()!r} at index {index}")


INT64 = np.iinfo(np.int64)
LARGEST: dict[type[np.floating[Any]], float] = {t: float(np.finfo(t).max) for t in (np.float32, np.float64)}


def check_number(field: str, value: object, dtype: type[np.floating[Any]], where: str = "") -> None:
    """A number the graph takes in ``dtype`` (a float) or int64 (an int): a 422 where it
    would silently become inf there or fail to convert."""
    if isinstance(value, bool):
        return
    if isinstance(value, int) and not INT64.min <= value <= INT64.max:
        raise invalid(field, f"{value}{where} is beyond int64 (at most {INT64.max} in magnitude)")
    if not isinstance(value, float) or abs(value) <= LARGEST[dtype]:  # NaN fails the comparison
        return
    name = np.dtype(dtype).name
    if not math.isfinite(value):
        raise invalid(field, f"must be a finite number in {name}, got {value!r}{where}")
    largest = LARGEST[dtype]
    hint = "; send dtype float64" if abs(value) <= LARGEST[np.float64] else ""
    raise invalid(field, f"{value!r}{where} is beyond the range of {name} (magnitude at most {largest:.6g}){hint}")


def check_params(params: Params, dtype: type[np.floating[Any]], prefix: str = "params") -> None:
    """Every numeric param (a number or a list of them, e.g. per-class weights) fits the
    dtype the graph takes it in (``kernels.feeds.param_feed``)."""
    for name in type(params).model_fields:
        value = getattr(params, name)
        if isinstance(value, list):
            for index, item in enumerate(value):
                check_number(f"{prefix}.{name}", item, dtype, f" (at index {index})")
        else:
            check_number(f"{prefix}.{name}", value, dtype)


def relaxed(spec_input: Input, params: Params) -> bool:
    """The input's ``relaxed_by`` param is true: any finite value is allowed."""
    return spec_input.relaxed_by is not None and bool(getattr(params, spec_input.relaxed_by))


def to_integers(
    field: str, array: np.ndarray, high: int, what: str, ignore_index: int | None = None, upper: str | None = None
) -> np.ndarray:
    """Integers in [0, high] (or equal to ``ignore_index``), as int64; ``upper`` names ``high`` (e.g. "T=6")."""
    check_finite(field, array)
    integers = array.astype(np.int64)
    if not np.array_equal(integers, array):
        index = first_bad_index(array, integers != array)
        raise invalid(field, f"{what}s must be integers; got {array[tuple(index)].item()!r} at index {index}")
    bad = (integers < 0) | (integers > high)
    if ignore_index is not None:
        bad &= integers != ignore_index
    if bad.any():
        index = first_bad_index(integers, bad)
        allowed = f"[0, {upper or high}]" + (f" or ignore_index {ignore_index}" if ignore_index is not None else "")
        raise invalid(field, f"{what} {integers[tuple(index)].item()} at index {index} is outside {allowed}")
    return integers


def check_allowed(field: str, array: np.ndarray, allowed: tuple[float, ...]) -> None:
    ok = np.isin(array, allowed)
    if not ok.all():
        index = first_bad_index(array, ~ok)
        values = ", ".join(f"{v:g}" for v in allowed)
        raise invalid(field, f"values must be one of {values}; got {array[tuple(index)].item()!r} at index {index}")


def check_positive_rows(field: str, array: np.ndarray) -> None:
    """Every row along the last axis has a positive sum (it is normalised to a distribution)."""
    sums = array.sum(axis=-1)
    bad = ~(sums > 0)
    if bad.any():
        index = first_bad_index(sums, bad)
        raise invalid(
            field,
            f"each row along the last axis is normalised to sum 1, so it needs a positive sum; "
            f"the row at index {index} sums to {sums[tuple(index)].item()!r}",
        )


def one_hot(field: str, labels: np.ndarray, classes: int, dtype: type[np.floating[Any]]) -> np.ndarray:
    """Integer labels as one-hot rows over ``classes`` (the last axis)."""
    checked = to_integers(field, labels, classes - 1, "label")
    expanded: np.ndarray = np.eye(classes, dtype=dtype)[checked]
    return expanded


def labels_as_one_hot(
    spec_input: Input, array: np.ndarray, first: tuple[int, ...], dtype: type[np.floating[Any]]
) -> np.ndarray:
    """An input that ``accepts_labels``, sent as integer labels, expanded to one-hot along its class
    axis: the last, or axis 1 for a channel-first input ``(N, C, ...)``, whose labels are ``(N, ...)``
    or, as MONAI's ``to_onehot_y`` takes them, ``(N, 1, ...)`` (with C > 1). Anything else is
    returned unchanged, for the shape check to judge."""
    if len(first) < 2:
        return array  # no class axis: the shape check names the missing axis
    if spec_input.shape[:2] != ("N", "C"):
        return one_hot(spec_input.name, array, first[-1], dtype) if array.shape == first[:-1] else array
    classes, spatial = first[1], first[2:]
    if array.shape == (first[0], *spatial) or (classes > 1 and array.shape == (first[0], 1, *spatial)):
        labels = array.reshape(first[0], *spatial)
        return np.moveaxis(one_hot(spec_input.name, labels, classes, dtype), -1, 1)
    return array


def bind_shapes(inputs: tuple[Input, ...], arrays: Mapping[str, np.ndarray]) -> dict[str, int | tuple[int, ...]]:
    """Bind each shape symbol to its size; a mismatch is a 422 naming the input."""
    bound: dict[str, int | tuple[int, ...]] = {}
    for spec_input in inputs:
        shape = arrays[spec_input.name].shape
        declared = spec_input.shape
        fixed = [d for d in declared if d != "..."]
        variadic = "..." in declared
        if len(shape) < len(fixed) or (not variadic and len(shape) != len(fixed)):
            raise _shape_error(spec_input, shape, bound)
        before = declared.index("...") if variadic else len(declared)
        after = len(declared) - before - 1 if variadic else 0
        dims: list[tuple[str, int | tuple[int, ...]]] = [(d, shape[i]) for i, d in enumerate(declared[:before])]
        if variadic:
            dims.append(("...", tuple(shape[before : len(shape) - after])))
            dims += [(d, shape[len(shape) - after + i]) for i, d in enumerate(declared[before + 1 :])]
        for symbol, size in dims:
            if bound.setdefault(symbol, size) != size:
                raise _shape_error(spec_input, shape, bound)
    return bound


def _shape_error(spec_input: Input, shape: tuple[int, ...], bound: Mapping[str, Any]) -> ServiceError:
    parts: list[str] = []
    for dim in spec_input.shape:
        if dim == "..." and dim in bound:
            parts += [str(size) for size in bound[dim]]
        else:
            parts.append(f"{dim}={bound[dim]}" if dim in bound else dim)
    return invalid(spec_input.name, f"expected shape ({', '.join(parts)}), got {list(shape)}")


def check_min_sizes(spec: LossSpec, params: Params, bound: Mapping[str, int | tuple[int, ...]]) -> None:
    """The least sizes the loss declares (``LossSpec.min_sizes``) for the bound shape symbols."""
    for rule in spec.min_sizes:
        size = bound.get(rule.symbol)
        if isinstance(size, int) and rule.applies(params) and size < rule.least(params):
            raise invalid(rule.field, f"{rule.reason} (got {rule.symbol}={size})")


def check_per_class_params(params: Params, shape: tuple[int, ...]) -> None:
    """A list-valued param (class weights, per-class alpha or pos_weight) has one entry
    per class: as many as ``params.classes`` counts in the first input's shape."""
    for name in type(params).model_fields:
        value = getattr(params, name)
        if isinstance(value, list) and len(value) != params.classes(shape):
            raise invalid(
                f"params.{name}",
                f"expected {params.classes(shape)} values, {params.classes_description()}, got {len(value)}",
            )


@dataclass(frozen=True)
class Batch:
    """A request's inputs, checked, at their natural shapes (the runtime lays them out)."""

    arrays: dict[str, np.ndarray]
    count: int


def decode_inputs(
    spec: LossSpec, params: Params, values: Mapping[str, Any], dtype: type[np.floating[Any]], max_elements: int
) -> Batch:
    arrays: dict[str, np.ndarray] = {}
    total = 0
    sent = tuple(i for i in spec.inputs if i.optional is None or values.get(i.name) is not None)
    for spec_input in sent:
        array = to_array(spec_input.name, values[spec_input.name], np.int64 if spec_input.integer else dtype)
        total += array.size
        if total > max_elements:
            raise too_many_elements(max_elements, spec_input.name)
        if spec_input.accepts_labels:
            array = labels_as_one_hot(spec_input, array, arrays[spec.inputs[0].name].shape, dtype)
        if spec_input.repeats_along_last:
            first = arrays[spec.inputs[0].name]
            if array.ndim >= 1 and array.shape == first.shape[:-1]:
                array = np.repeat(array[..., None], first.shape[-1], axis=-1)
        arrays[spec_input.name] = array
    bound = bind_shapes(sent, arrays)
    check_min_sizes(spec, params, bound)
    for spec_input in sent:
        name = spec_input.name
        array = arrays[name]
        if spec_input.kind == "label":
            classes = bound.get("C")
            high = classes - 1 if isinstance(classes, int) else 2**62
            arrays[name] = to_integers(name, array, high, "label", getattr(params, "ignore_index", None))
        elif spec_input.kind == "count":
            assert spec_input.bound is not None, f"{spec.name}.{name}: a count input needs a bound"
            limit = bound[spec_input.bound]
            assert isinstance(limit, int)
            arrays[name] = to_integers(name, array, limit, "count", upper=f"{spec_input.bound}={limit}")
        elif relaxed(spec_input, params):
            check_finite(name, array)
        elif spec_input.holds_probabilities(params):
            check_range(name, array, 0.0, 1.0, "probabilities" if spec_input.kind == "score" else "values")
        elif spec_input.kind == "nonnegative":
            check_nonnegative(name, array)
        elif spec_input.kind == "cosine":
            check_range(name, array, -1.0, 1.0, "cosine similarities")
        else:
            check_finite(name, array)
        if spec_input.allowed is not None:
            check_allowed(name, array, spec_input.allowed)
        if spec_input.normalized:
            check_positive_rows(name, arrays[name])
    arrays = spec.fill_optional(arrays, dtype)  # optional inputs left out, at the sizes the others bound
    check_per_class_params(params, arrays[spec.inputs[0].name].shape)
    if spec.check is not None:
        spec.check(params, arrays)  # InvalidInput: the data plane answers it as invalid
    count = 1 if spec.is_batch_level(params) else bound["N"]
    assert isinstance(count, int)
    return Batch(arrays, count)


def decode_weights(value: Any, count: int, dtype: type[np.floating[Any]], mean: bool) -> np.ndarray:
    if value is None:
        return np.ones(count, dtype=dtype)
    weights = to_array("weights", value, dtype)
    if weights.shape != (count,):
        raise invalid("weights", f"expected shape (N={count},): one weight per sample, got {list(weights.shape)}")
    check_finite("weights", weights)
    check_range("weights", weights, 0.0, math.inf, "weights")
    if mean and not weights.sum() > 0:
        raise invalid("weights", "must have a positive sum for reduction 'mean'")
    return weights
