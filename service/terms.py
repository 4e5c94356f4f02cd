"""Composite terms from a request: resolved against the catalog and checked, and each term's
inputs validated by its own declaration (for ``POST /loss/composite`` and named composites)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kernels.composite import Term, check_terms, field_inputs
from kernels.spec import InvalidInput
from service.arrays import Batch, decode_inputs, to_array
from service.errors import ServiceError, from_kernel, from_validation_error, invalid, too_many_elements
from service.json_types import check_param_types
from service.lookup import loss_named

MAX_TERMS = 16
RESERVED = frozenset({"terms", "weights", "reduction", "outputs", "dtype", "params"})


class TermRequest(BaseModel):
    """One term: a catalog loss (name or alias), its weight and params, and where its inputs come from."""

    model_config = ConfigDict(extra="forbid")

    loss: str = Field(description="A catalog loss, by name or alias.")
    weight: float = Field(1.0, allow_inf_nan=False, description="The term's weight in the sum.")
    params: dict[str, Any] = Field(default_factory=dict, description="The loss's params (its own defaults apply).")
    inputs: dict[str, str] = Field(
        default_factory=dict,
        description="Term input name -> request field, for inputs not sent under their own name "
        '(e.g. {"x1": "embeddings_a"}).',
    )


def resolve_terms(requested: Sequence[TermRequest]) -> list[Term]:
    """Catalog terms from a request: unknown losses, bad params and bad input maps are 422s
    naming ``terms[i]...``; so are compositions that cannot be one graph."""
    terms = []
    for index, entry in enumerate(requested):
        where = f"terms[{index}]"
        spec = loss_named(entry.loss, field=f"{where}.loss")
        check_param_types(spec.params, entry.params, f"{where}.params")
        try:
            params = spec.params.model_validate(entry.params)
        except ValidationError as exc:
            error = from_validation_error(list(exc.errors()))
            raise error.renamed(f"{where}.params.{error.field}" if error.field else f"{where}.params") from None
        names = [i.name for i in spec.inputs]
        for key, field in entry.inputs.items():
            if key not in names:
                raise invalid(
                    f"{where}.inputs.{key}", f"{spec.name} has no input {key!r}; its inputs: {', '.join(names)}"
                )
            if not field.isidentifier() or field in RESERVED:
                raise invalid(f"{where}.inputs.{key}", f"{field!r} cannot name a request field")
        mapping = tuple((name, entry.inputs.get(name, name)) for name in names)
        terms.append(Term(spec, entry.weight, params, mapping))
    try:
        check_terms(terms)
    except InvalidInput as exc:
        raise from_kernel(exc) from None
    return terms


def decode_terms(
    terms: Sequence[Term], values: Mapping[str, Any], dtype: type[np.floating[Any]], max_elements: int
) -> Batch:
    """Each term's inputs checked by its own declaration, by request field."""
    layouts = field_inputs(terms)
    missing = [f for f, x in layouts.items() if x.optional is None and values.get(f) is None]
    if missing:
        users = [f"terms[{i}] ({t.spec.name})" for i, t in enumerate(terms) if missing[0] in t.fields.values()]
        raise invalid(missing[0], f"missing: required by {', '.join(users)}")
    raw = {
        f: to_array(f, values[f], np.int64 if x.integer else dtype)
        for f, x in layouts.items()
        if values.get(f) is not None  # an optional field left out: each term fills its own (decode_inputs)
    }
    if sum(a.size for a in raw.values()) > max_elements:
        raise too_many_elements(max_elements, next(iter(raw)))
    arrays: dict[str, np.ndarray] = {}
    owner: dict[str, int] = {}
    count: tuple[int, str] | None = None
    for index, t in enumerate(terms):
        own = {name: raw[field] for name, field in t.inputs if field in raw}
        try:
            batch = decode_inputs(t.spec, t.params, own, dtype, max_elements)
        except (ServiceError, InvalidInput) as exc:
            error = from_kernel(exc) if isinstance(exc, InvalidInput) else exc
            renamed = t.fields.get(error.field or "", error.field)
            if error.field and error.field.startswith("params."):
                renamed = f"terms[{index}].{error.field}"
            if renamed is not None and renamed != error.field:
                raise error.renamed(renamed) from None
            raise error from None
        for name, field in t.inputs:
            array = batch.arrays[name]
            first = arrays.setdefault(field, array)
            if first.shape != array.shape:
                raise invalid(
                    f"terms[{index}].loss",
                    f"{t.spec.name} reads {field!r} as shape {list(array.shape)} but terms[{owner[field]}] "
                    f"({terms[owner[field]].spec.name}) as {list(first.shape)}; send one-hot targets to both",
                )
            owner.setdefault(field, index)
        if count is None:
            count = (1 if t.batch_level else batch.count, t.inputs[0][1])
        elif not t.batch_level and batch.count != count[0]:
            field = t.inputs[0][1]
            raise invalid(field, f"has {batch.count} samples but {count[1]!r} has {count[0]}: the terms share N")
    assert count is not None
    return Batch(arrays, count[0])
