"""How a loss is declared: inputs, params, properties, card, and its ONNX kernel."""

from __future__ import annotations

import difflib
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

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
"""real: any finite float; probability: in [0, 1]; score: probabilities or raw scores
(logits), as ``Input.probabilities_when`` says (by default: unless the ``from_logits`` param
is true); label: integer class index in [0, C) (or ``ignore_index``); count: integer in
[0, size of the symbol named by ``Input.bound``]."""


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
    probabilities_when: tuple[str, Any] = ("from_logits", False)
    """For ``score`` inputs: the param, and its value, under which the input holds
    probabilities (checked to lie in [0, 1]); any other value of that param means raw
    scores (logits), e.g. ``("activation", "none")``. A loss without that param takes
    probabilities."""

    @property
    def integer(self) -> bool:
        return self.kind in ("label", "count")

    def holds_probabilities(self, params: BaseModel) -> bool:
        """Whether the values must lie in [0, 1] with these params."""
        if self.kind != "score":
            return self.kind == "probability"
        name, value = self.probabilities_when
        return bool(getattr(params, name, value) == value)


@dataclass(frozen=True)
class MinSize:
    """A shape symbol's size must be at least ``minimum`` (a number, or the name of an
    integer param whose value it is), where the params take the values in ``when``;
    otherwise the request is a 422 naming ``field`` (an input, or ``params.<name>``)
    and giving ``reason``."""

    symbol: str
    minimum: int | str
    field: str
    reason: str
    when: tuple[tuple[str, Any], ...] = ()

    def applies(self, params: BaseModel) -> bool:
        return all(getattr(params, name) == value for name, value in self.when)

    def least(self, params: BaseModel) -> int:
        return self.minimum if isinstance(self.minimum, int) else int(getattr(params, self.minimum))


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
    min_sizes: tuple[MinSize, ...] = ()
    """Least sizes of shape symbols (e.g. an image at least as large as the window);
    the service checks them after binding the shapes."""
    variants: tuple[Variant, ...] = field(default=())

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
    min_sizes: tuple[MinSize, ...] = (),
) -> Callable[[KernelFactory], LossSpec]:
    """Register a loss; decorates the factory that picks its onnxscript kernel."""

    def register(factory: KernelFactory) -> LossSpec:
        structural = tuple(factory.__code__.co_varnames[: factory.__code__.co_argcount])
        unknown = set(structural) - set(params.model_fields)
        if unknown:
            raise ValueError(f"{name}: structural params {sorted(unknown)} are not params")
        symbols = {d for i in inputs for d in i.shape}
        for rule in min_sizes:
            named = {n for n, _ in rule.when} | ({rule.minimum} if isinstance(rule.minimum, str) else set())
            if rule.symbol not in symbols or not named <= set(params.model_fields):
                raise ValueError(f"{name}: size rule {rule} names an unknown shape symbol or param")
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
                min_sizes=min_sizes,
                variants=_all_variants(params, structural),
            )
        )

    return register
