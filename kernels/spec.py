"""How a loss is declared: inputs, params, properties, card, and its ONNX kernel."""

from __future__ import annotations

import difflib
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from onnxscript.values import OnnxFunction
from pydantic import BaseModel, ConfigDict

from kernels.curves import Curve

Task = Literal[
    "regression",
    "classification",
    "imbalance",
    "ranking",
    "sequence",
    "segmentation",
    "generative",
]
InputKind = Literal["real", "probability", "score", "label", "count"]
"""real: any finite float; probability: in [0, 1]; score: probability unless the
``from_logits`` param is true; label: integer class index in [0, C) (or ``ignore_index``);
count: integer in [0, size of the symbol named by ``Input.bound``]."""


class InvalidInput(ValueError):
    """Raised by a loss's ``check``: the request field at fault (an input, or ``params.<name>``) and
    what is wrong with it; the service answers 422 naming the field."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field, self.detail = field, detail


class Params(BaseModel):
    """Base of every loss's params model: unknown params are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(Params):
    pass


@dataclass(frozen=True)
class Input:
    name: str
    shape: tuple[str, ...]
    """Symbols bound across a request's inputs; "..." matches any number of axes."""
    kind: InputKind
    description: str
    differentiable: bool = False
    allowed: tuple[float, ...] | None = None
    """The only values allowed (e.g. labels -1 and 1)."""
    bound: str | None = None
    """For ``count`` inputs: the shape symbol whose size bounds the values (e.g. "T")."""
    accepts_labels: bool = False
    """A distribution over the last axis that may also be sent as integer labels (one
    axis fewer); the service expands them to one-hot."""

    @property
    def integer(self) -> bool:
        return self.kind in ("label", "count")


class Properties(BaseModel):
    """Claims a card makes; each true claim is checked by a property test."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    robust_to_outliers: bool
    smooth_gradient: bool
    convex: bool
    differentiable: bool
    bounded_below: bool
    probabilistic_interpretation: str | None


@dataclass(frozen=True)
class Card:
    title: str
    summary: str
    formula: str
    use_cases: tuple[str, ...]
    equivalents: dict[str, str]
    references: tuple[str, ...]


Variant = tuple[tuple[str, Any], ...]
"""The values of a loss's structural params, which select one of its graphs."""

KernelFunction = OnnxFunction[..., Any]
KernelFactory = Callable[..., KernelFunction]
InputCheck = Callable[[Any, Mapping[str, np.ndarray]], None]
"""``(params, arrays) -> None``: checks that involve params or several inputs, run by the service
after every input passed its own declared checks (arrays at their sent shapes, integer inputs as
int64); raises :class:`InvalidInput`."""


@dataclass(frozen=True, eq=False)  # identity: one spec object per loss
class LossSpec:
    """A loss, declared once; routes, schemas and the registry are derived from it.

    ``kernel`` is called with the structural params (those that change the graph's
    structure, named by its signature) and returns an onnxscript function. The
    function's own parameters name what it consumes: the loss's inputs and the
    non-structural params, which are fed as graph inputs. Inputs arrive with their "..."
    axes collapsed into one. It returns the element losses ``E`` of shape ``(N, R)``
    (class-wise losses already summed over the class axis), then ``dE/d<input>`` for
    each differentiable input, then, when ``mass`` is true, the per-element weight ``M``
    that a ``mean`` divides by (PyTorch's weighted mean for class weights and ignored
    labels).
    """

    name: str
    task: Task
    inputs: tuple[Input, ...]
    params: type[Params]
    properties: Properties
    card: Card
    kernel: KernelFactory
    structural: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    curve: Curve | None = None
    mass: bool = False
    batch_level: bool = False
    """The loss is one value for the whole batch (its inputs may have different
    lengths, e.g. N real and M fake scores): no sample weights, ``per_sample`` is
    ``[loss]`` and the kernel returns elements of shape ``(1, 1)``."""
    variants: tuple[Variant, ...] = field(default=())
    check: InputCheck | None = None
    """Validation the declarations cannot express (e.g. a param bounded by an input's size)."""

    @property
    def differentiable(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs if i.differentiable)

    def variant(self, params: Params) -> Variant:
        return tuple((name, structural_key(self.params, name, getattr(params, name))) for name in self.structural)

    def function(self, variant: Variant) -> KernelFunction:
        return self.kernel(**dict(variant))


def _choices(params: type[Params], name: str) -> tuple[Any, ...] | None:
    """The values of a bool or Literal param; None for any other type."""
    annotation = params.model_fields[name].annotation
    if annotation is bool:
        return (False, True)
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    return None


def structural_key(params: type[Params], name: str, value: Any) -> Any:
    """Booleans and choices select a graph by value; any other param by presence."""
    return value if _choices(params, name) is not None else value is not None


def _variant_domain(params: type[Params], name: str) -> tuple[Any, ...]:
    return _choices(params, name) or (False, True)


def _all_variants(params: type[Params], structural: tuple[str, ...]) -> tuple[Variant, ...]:
    variants: list[Variant] = [()]
    for name in structural:
        variants = [(*v, (name, value)) for v in variants for value in _variant_domain(params, name)]
    return tuple(variants)


class Registry:
    """Every declared loss, by canonical name and by alias."""

    def __init__(self) -> None:
        self._specs: dict[str, LossSpec] = {}
        self._names: dict[str, str] = {}

    def add(self, spec: LossSpec) -> LossSpec:
        for name in (spec.name, *spec.aliases):
            if name in self._names:
                raise ValueError(f"loss name {name!r} is declared twice")
            self._names[name] = spec.name
        self._specs[spec.name] = spec
        return spec

    def __iter__(self) -> Iterator[LossSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def get(self, name: str) -> LossSpec | None:
        canonical = self._names.get(name)
        return None if canonical is None else self._specs[canonical]

    def close_matches(self, name: str) -> list[str]:
        return difflib.get_close_matches(name, list(self._names), n=5, cutoff=0.5)


REGISTRY = Registry()


def loss(
    *,
    name: str,
    task: Task,
    inputs: tuple[Input, ...],
    properties: Properties,
    card: Card,
    params: type[Params] = NoParams,
    aliases: tuple[str, ...] = (),
    curve: Curve | None = None,
    mass: bool = False,
    batch_level: bool = False,
    check: InputCheck | None = None,
) -> Callable[[KernelFactory], LossSpec]:
    """Register a loss; decorates the factory that picks its onnxscript kernel."""

    def register(factory: KernelFactory) -> LossSpec:
        structural = tuple(factory.__code__.co_varnames[: factory.__code__.co_argcount])
        unknown = set(structural) - set(params.model_fields)
        if unknown:
            raise ValueError(f"{name}: structural params {sorted(unknown)} are not params")
        return REGISTRY.add(
            LossSpec(
                name=name,
                task=task,
                inputs=inputs,
                params=params,
                properties=properties,
                card=card,
                kernel=factory,
                structural=structural,
                aliases=aliases,
                curve=curve,
                mass=mass,
                batch_level=batch_level,
                variants=_all_variants(params, structural),
                check=check,
            )
        )

    return register
