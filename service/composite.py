"""Composite requests and the named composites of ``LOSSD_COMPOSITES``: what they look like,
and the definitions registered at start-up (terms resolved and checked by service.terms)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kernels.composite import CompositeSpec
from kernels.composites import composite, register
from kernels.spec import Task
from service.errors import ServiceError, from_validation_error
from service.schemas import DtypeName, LossResponse, Output, Reduction
from service.terms import MAX_TERMS, TermRequest, resolve_terms


class CompositeRequest(BaseModel):
    """A weighted sum of catalog losses over shared inputs; the arrays are further top-level fields,
    named by the terms' inputs (or their ``inputs`` maps)."""

    model_config = ConfigDict(extra="allow", title="CompositeRequest")

    terms: list[TermRequest] = Field(min_length=1, max_length=MAX_TERMS)
    weights: Any = Field(None, description="Non-negative per-sample weights, shape (N,).")
    reduction: Reduction = "mean"
    outputs: list[Output] = Field(
        default_factory=lambda: list[Output](["loss"]), description="loss, per_sample, gradients."
    )
    dtype: DtypeName = "float32"


class TermValue(BaseModel):
    loss: str = Field(description="The term's loss (canonical name).")
    weight: float
    value: float | list[float] = Field(description="The term's own reduced loss (per-sample list for 'none').")


class CompositeResponse(LossResponse):
    terms: list[TermValue] = Field(description="Each term's own value, in request order.")


class CompositeDefinition(BaseModel):
    """A named composite as ``LOSSD_COMPOSITES`` gives it."""

    model_config = ConfigDict(extra="forbid")

    terms: list[TermRequest] = Field(min_length=1, max_length=MAX_TERMS)
    title: str | None = None
    task: Task | None = None
    summary: str = ""
    aliases: list[str] = Field(default_factory=list)
    use_cases: list[str] = Field(default_factory=list)


def register_configured(definitions: Mapping[str, Any]) -> list[CompositeSpec]:
    """Register the named composites of ``LOSSD_COMPOSITES``; a bad definition stops start-up
    with a message naming the composite and the field."""
    registered = []
    for name, raw in definitions.items():
        if name == "composite" or not name.isidentifier():
            raise ValueError(f"LOSSD_COMPOSITES: {name!r} cannot name a composite (an identifier, not 'composite')")
        try:
            definition = CompositeDefinition.model_validate(raw)
            terms = resolve_terms(definition.terms)
            spec = composite(
                name,
                terms,
                title=definition.title,
                task=definition.task,
                summary=definition.summary,
                aliases=tuple(definition.aliases),
                use_cases=tuple(definition.use_cases),
            )
        except ValidationError as exc:
            raise ValueError(f"LOSSD_COMPOSITES {name}: {from_validation_error(list(exc.errors())).detail}") from None
        except ServiceError as error:
            raise ValueError(f"LOSSD_COMPOSITES {name}: {error.detail}") from None
        registered.append(register(spec))
    return registered
