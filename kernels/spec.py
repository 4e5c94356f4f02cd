"""How a loss is declared: inputs, params, properties, card, and its ONNX kernel."""

from __future__ import annotations

import difflib
import functools
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import onnx
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
InputKind = Literal["real", "nonnegative", "probability", "cosine", "score", "label", "count"]
"""real: any finite float; nonnegative: a finite float >= 0 (variances, rates, counts
that need not be integers); probability: in [0, 1]; cosine: a cosine similarity in [-1, 1];
score: probabilities or raw scores (logits), as ``Input.probabilities_when`` says (by
default: unless the ``from_logits`` param is true); label: integer class index in [0, C)
(or ``ignore_index``); count: integer in [0, size of the symbol named by ``Input.bound``]."""


class InvalidInput(ValueError):
    """Raised by a loss's ``check``: the request field at fault (an input, or ``params.<name>``) and
    what is wrong with it; the service answers 422 naming the field."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field, self.detail = field, detail


class Params(BaseModel):
    """Base of every loss's params model: unknown params are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def classes(self, shape: tuple[int, ...]) -> int:
        """How many values a list-valued (per-class) param takes, given the first input's shape:
        its last axis, unless the loss's classes lie elsewhere (channel-first segmentation)."""
        return shape[-1]

    def classes_description(self) -> str:
        """Where :meth:`classes` counts them, for the error that names a wrong length."""
        return "one per class (the last axis of the predictions)"


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
    repeats_along_last: bool = False
    """May be sent with one axis fewer than the first input; the service then repeats it along that
    input's last axis (quantile's targets against one prediction column per quantile)."""
    relaxed_by: str | None = None
    """A boolean param that, when true, lifts the kind's range check: the values are then
    any finite float (e.g. "log_input": log-rates instead of non-negative rates)."""
    normalized: bool = False
    """Each row along the last axis is a distribution given up to scale: the kernel divides
    it by its sum, so the service requires every row to have a positive sum."""
    probabilities_when: tuple[str, Any] = ("from_logits", False)
    """For ``score`` inputs: the param, and its value, under which the input holds
    probabilities (checked to lie in [0, 1]); any other value of that param means raw
    scores (logits), e.g. ``("activation", "none")``. A loss without that param takes
    probabilities."""
    optional: float | None = None
    """An input a request may leave out: it is then filled with this value at the shape its symbols
    are bound to by the other inputs (e.g. TF-GAN's per-score weights, 1.0). Only for fixed-rank
    float inputs whose symbols another, required input binds; never differentiable."""

    @property
    def integer(self) -> bool:
        return self.kind in ("label", "count")

    def filled(self, sizes: Mapping[str, int], dtype: type[np.floating[Any]]) -> np.ndarray:
        """The array an optional input left out stands for, given the sizes its symbols are bound to."""
        assert self.optional is not None, f"{self.name} is not optional"
        return np.full(tuple(sizes[d] for d in self.shape), self.optional, dtype=dtype)

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


@dataclass(frozen=True)
class ProtoKernel:
    """A kernel assembled as ONNX protos rather than written in onnxscript, e.g. around a
    model the operator configures. ``function`` plays the part of the onnxscript
    function (same inputs and outputs contract); ``calls`` are the onnxscript functions
    it calls by their own names (added to the model with their own callees)."""

    function: onnx.FunctionProto
    calls: tuple[OnnxFunction[..., Any], ...] = ()
    functions: tuple[onnx.FunctionProto, ...] = ()
    """Function protos it calls besides ``calls``, with their callees, each under its own
    (domain, name) among them (e.g. a named composite's terms, as ``kernels.graph.Functions``
    gives them)."""
    input_dims: Mapping[str, tuple[str | int, ...]] = field(default_factory=dict)
    """Graph dims of inputs where the kernel fixes some sizes (e.g. the channels an
    extractor takes); the service checks requests against them."""
    forward: onnx.FunctionProto | None = None
    """A cheaper body without the gradients (elements only, same inputs), for the graphs that
    return none; None: ``function`` serves both."""


KernelFunction = OnnxFunction[..., Any] | ProtoKernel
KernelFactory = Callable[..., KernelFunction]
InputCheck = Callable[[Any, Mapping[str, np.ndarray]], None]
"""``(params, arrays) -> None``: checks that involve params or several inputs, run by the service
after every input passed its own declared checks (arrays at their sent shapes, integer inputs as
int64); raises :class:`InvalidInput`."""


@dataclass(frozen=True)
class Configured:
    """A structural ``str | None`` param whose values are names the operator configures
    (e.g. feature extractors), not a choice fixed by its type: the runtime's
    ``resources[collection]`` supplies the names, hence the loss's graph variants, and
    the kernel factory receives the object a name stands for. ``None`` (the default)
    selects the first configured name. With nothing configured the loss has no graph."""

    collection: str
    """The key of the runtime's resources that holds the named objects."""
    how: str
    """How an operator configures one, for the error when none is configured."""
    no_gradients: Callable[[Any], str | None] = lambda _: None
    """Why the kernel around a configured object returns no gradients (e.g. an extractor
    with an operator that has no backward); None: it returns the loss's gradients."""


Resources = Mapping[str, Mapping[str, Any]]
"""Configured objects by collection and name, e.g. ``{"feature_models": {"vgg": ...}}``."""
NO_RESOURCES: Resources = {}


class NotConfigured(LookupError):
    """The loss needs a configured object and the operator configured none."""

    def __init__(self, loss: str, param: str, how: str) -> None:
        super().__init__(f"{loss} needs its {param} configured, and none is: {how}")
        self.loss, self.param = loss, param


class UnknownChoice(ValueError):
    """A configured param names something that is not configured."""

    def __init__(self, param: str, value: str, names: list[str]) -> None:
        super().__init__(f"no {param} named {value!r} is configured; configured: {', '.join(names)}")
        self.param, self.value, self.names = param, value, names


@dataclass(frozen=True, eq=False)  # identity: one spec object per loss
class LossSpec:
    """A loss, declared once; routes, schemas and the registry are derived from it.

    ``kernel`` is called with the structural params (those that change the graph's
    structure, named by its signature) and returns an onnxscript function. A bool or
    Literal param arrives as its value; any other as whether it is present (see
    ``structural_key``), and its value can still be a graph input. The
    function's own parameters name what it consumes: the loss's inputs and the
    non-structural params, which are fed as graph inputs. Inputs arrive with their "..."
    axes collapsed into one. It returns the element losses ``E`` of shape ``(N, R)``
    (class-wise losses already summed over the class axis), then ``dE/d<input>`` for
    each differentiable input, then, when ``mass`` is true, the per-element weight ``M``
    that a ``mean`` divides by (PyTorch's weighted mean for class weights and ignored
    labels). A factory may instead return a ``ProtoKernel`` with the same contract,
    assembled from ONNX protos. A loss without differentiable inputs returns no
    gradients (and has one graph per variant and dtype).
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
    ``[loss]`` and the kernel returns elements of shape ``(1, R)``. Always, whatever the params; a
    loss that is batch-level for some params only names the param in ``batch_param``. Read it
    through :meth:`is_batch_level` (a request's params) or :meth:`variant_batch_level` (a graph)."""
    batch_param: str | None = None
    """A boolean structural param under which the loss is batch-level (MONAI's ``batch``: overlap
    statistics summed over the batch before the ratio); None: ``batch_level`` alone decides."""
    min_sizes: tuple[MinSize, ...] = ()
    """Least sizes of shape symbols (e.g. an image at least as large as the window);
    the service checks them after binding the shapes."""
    variants: tuple[Variant, ...] = field(default=())
    """Every graph variant, for losses without ``configured`` params (else empty: the
    variants come from the configuration, see ``variants_for``)."""
    configured: Mapping[str, Configured] = field(default_factory=dict)
    check: InputCheck | None = None
    """Validation the declarations cannot express (e.g. a param bounded by an input's size)."""
    row_wise: bool = True
    """Each sample's losses depend on its own row alone (false e.g. for hinge, whose label
    rule looks at the whole batch); batch-level losses and masses are never split."""

    @property
    def differentiable(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs if i.differentiable)

    @property
    def required(self) -> tuple[Input, ...]:
        """The inputs every request must send (all but the ``optional`` ones)."""
        return tuple(i for i in self.inputs if i.optional is None)

    @property
    def reduces_itself(self) -> bool:
        """Whether its kernel takes the sample weights and reduces itself (a named composite's does)."""
        return False

    @property
    def ever_batch_level(self) -> bool:
        """Whether some params make the loss one value for the whole batch."""
        return self.batch_level or self.batch_param is not None

    def is_batch_level(self, params: BaseModel) -> bool:
        """Whether the loss, with these params, is one value for the whole batch."""
        return self.batch_level or (self.batch_param is not None and bool(getattr(params, self.batch_param)))

    def variant_batch_level(self, variant: Variant) -> bool:
        """Whether one graph variant is batch-level (the ``batch_param`` is structural)."""
        return self.batch_level or (self.batch_param is not None and bool(dict(variant).get(self.batch_param)))

    def fill_optional(self, arrays: Mapping[str, np.ndarray], dtype: type[np.floating[Any]]) -> dict[str, np.ndarray]:
        """``arrays`` with every optional input left out filled in, at the sizes the others bind."""
        return fill_optional(self.inputs, arrays, dtype)

    def no_gradients(self, variant: Variant, resources: Resources = NO_RESOURCES) -> str | None:
        """Why one variant's graphs return no gradients although the loss has differentiable
        inputs (a configured object without a backward); None: they return them."""
        for name, value in variant:
            if name in self.configured:
                configured = self.configured[name]
                why = configured.no_gradients(resources[configured.collection][value])
                if why is not None:
                    return f"{name} {value!r}: {why}"
        return None

    def differentiable_for(self, variant: Variant, resources: Resources = NO_RESOURCES) -> tuple[str, ...]:
        """The inputs one variant's graphs differentiate (on every request: cheap without configured params)."""
        if not self.configured or not self.differentiable:
            return self.differentiable
        return () if self.no_gradients(variant, resources) else self.differentiable

    def choices(self, resources: Resources) -> dict[str, tuple[str, ...]]:
        """The configured names of each ``configured`` param."""
        return {name: tuple(resources.get(c.collection, {})) for name, c in self.configured.items()}

    def variants_for(self, resources: Resources) -> tuple[Variant, ...]:
        """Every graph variant, given what the operator configured."""
        if not self.configured:
            return self.variants
        return _all_variants(self.params, self.structural, self.choices(resources))

    def resolve(self, name: str, value: str | None, resources: Resources) -> str:
        """The configured name a ``configured`` param's value selects (None: the first)."""
        names = list(self.choices(resources)[name])
        if not names:
            raise NotConfigured(self.name, name, self.configured[name].how)
        if value is None:
            return names[0]
        if value not in names:
            raise UnknownChoice(name, value, names)
        return value

    def variant(self, params: Params, resources: Resources = NO_RESOURCES) -> Variant:
        return tuple(
            (
                name,
                self.resolve(name, getattr(params, name), resources)
                if name in self.configured
                else structural_key(self.params, name, getattr(params, name)),
            )
            for name in self.structural
        )

    def function(self, variant: Variant, resources: Resources = NO_RESOURCES) -> KernelFunction:
        """The kernel of one variant; configured names become the objects they stand for."""
        args = {
            name: resources[self.configured[name].collection][value] if name in self.configured else value
            for name, value in variant
        }
        return self.kernel(**args)


def fill_optional(
    inputs: tuple[Input, ...], arrays: Mapping[str, np.ndarray], dtype: type[np.floating[Any]]
) -> dict[str, np.ndarray]:
    """``arrays`` with every optional input left out filled in, at the sizes the sent fixed-rank inputs bind
    their symbols to (the one place optional inputs become arrays: the service's checks, in-process runs and
    composites all call it)."""
    missing = [i for i in inputs if i.optional is not None and i.name not in arrays]
    if not missing:
        return dict(arrays)
    sizes: dict[str, int] = {}
    for spec_input in inputs:
        if spec_input.name in arrays and "..." not in spec_input.shape:
            sizes.update(zip(spec_input.shape, arrays[spec_input.name].shape, strict=False))
    return {**arrays, **{i.name: i.filled(sizes, dtype) for i in missing}}


@functools.cache  # every request selects its graph by these
def _choices(params: type[Params], name: str) -> tuple[Any, ...] | None:
    """The values of a bool or Literal param; None for any other type."""
    annotation = params.model_fields[name].annotation
    if annotation is bool:
        return (False, True)
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    return None


def structural_key(params: type[Params], name: str, value: Any) -> Any:
    """Booleans and choices select a graph by value; any other param by presence: an
    optional param is absent when None, a plain number when 0 (no label smoothing)."""
    if _choices(params, name) is not None:
        return value
    # An optional param is off when None (pos_weight=0 is a weight); a plain number when 0.
    return value is not None and (_optional(params, name) or not (isinstance(value, int | float) and value == 0))


@functools.cache
def _optional(params: type[Params], name: str) -> bool:
    return type(None) in typing.get_args(params.model_fields[name].annotation)


def _variant_domain(params: type[Params], name: str) -> tuple[Any, ...]:
    return _choices(params, name) or (False, True)


def _all_variants(
    params: type[Params], structural: tuple[str, ...], configured: Mapping[str, tuple[str, ...]]
) -> tuple[Variant, ...]:
    """The product of the structural params' domains (a configured param's: its names)."""
    variants: list[Variant] = [()]
    for name in structural:
        domain = configured[name] if name in configured else _variant_domain(params, name)
        variants = [(*v, (name, value)) for v in variants for value in domain]
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
    batch_param: str | None = None,
    configured: Mapping[str, Configured] | None = None,
    check: InputCheck | None = None,
    min_sizes: tuple[MinSize, ...] = (),
    row_wise: bool = True,
) -> Callable[[KernelFactory], LossSpec]:
    """Register a loss; decorates the factory that picks its onnxscript kernel."""
    configured_params = dict(configured or {})

    def register(factory: KernelFactory) -> LossSpec:
        structural = tuple(factory.__code__.co_varnames[: factory.__code__.co_argcount])
        unknown = set(structural) - set(params.model_fields)
        if unknown:
            raise ValueError(f"{name}: structural params {sorted(unknown)} are not params")
        for param in configured_params:
            field_info = params.model_fields.get(param)
            if param not in structural or field_info is None or field_info.annotation != str | None:
                raise ValueError(f"{name}: configured param {param!r} must be a structural `str | None` param")
        for spec_input in inputs:
            switch = spec_input.relaxed_by
            if switch is not None and (switch not in params.model_fields or _choices(params, switch) != (False, True)):
                raise ValueError(f"{name}: input {spec_input.name!r} is relaxed by {switch!r}, not a boolean param")
        if batch_param is not None and (
            batch_param not in structural or _choices(params, batch_param) != (False, True)
        ):
            raise ValueError(f"{name}: batch_param {batch_param!r} must be a structural boolean param")
        bound_by_required = {d for i in inputs if i.optional is None for d in i.shape}
        for spec_input in inputs:
            if spec_input.optional is not None and (
                spec_input.differentiable
                or spec_input.integer
                or "..." in spec_input.shape
                or not set(spec_input.shape) <= bound_by_required
            ):
                raise ValueError(
                    f"{name}: optional input {spec_input.name!r} must be a fixed-rank float input, not differentiable, "
                    "whose symbols a required input binds"
                )
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
                batch_param=batch_param,
                variants=_all_variants(params, structural, dict.fromkeys(configured_params, ())),
                configured=configured_params,
                check=check,
                min_sizes=min_sizes,
                row_wise=row_wise,
            )
        )

    return register
