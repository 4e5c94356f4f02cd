"""JSON's own types for a loss's params (REST): a boolean is not a number, a number is not a
boolean, and a string is not a number. pydantic's lax mode would read ``true`` as 1.0, ``1``
as true and ``"3"`` as 3.0; a typed client never sends those, so they are a 422 naming the
param. The V2 edge keeps reading text (its parameters are scalars, and tritonclient sends
floats as text)."""

from __future__ import annotations

import types
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from service.errors import invalid

KIND = {bool: "boolean", int: "number", float: "number", str: "string"}


def _kinds(annotation: Any) -> frozenset[str]:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return frozenset().union(*(_kinds(a) for a in get_args(annotation)))
    if origin is Annotated:
        return _kinds(get_args(annotation)[0])
    if origin is Literal:
        return frozenset(KIND.get(type(v), "other") for v in get_args(annotation))
    return frozenset([KIND.get(annotation, "other")])


@cache
def kinds(model: type[BaseModel]) -> dict[str, frozenset[str]]:
    """Each field's JSON kinds (boolean, number, string; "other" for lists and the rest)."""
    return {name: _kinds(field.annotation) for name, field in model.model_fields.items()}


def check_param_types(model: type[BaseModel], raw: Any, where: str = "params") -> None:
    if not isinstance(raw, dict):
        return  # pydantic says what is wrong with it
    expected = kinds(model)
    for key, value in raw.items():
        accepted = expected.get(key)
        kind = KIND.get(type(value))
        if accepted is None or kind is None or kind in accepted or (kind == "number" and "other" in accepted):
            continue
        wanted = " or ".join(sorted(k for k in accepted if k != "other")) or "list"
        raise invalid(f"{where}.{key}", f"{value!r} is a JSON {kind}: {key} takes a {wanted}")
