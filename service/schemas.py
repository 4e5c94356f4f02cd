"""Pydantic models derived from the loss declarations: requests, responses, cards."""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model

from kernels.recommend import OutputKind
from kernels.spec import Input, LossSpec, Properties, Task

Reduction = Literal["mean", "sum", "none"]
Output = Literal["loss", "per_sample", "gradients"]
DtypeName = Literal["float32", "float64"]


def array_schema(spec_input: Input | None) -> dict[str, Any]:
    if spec_input is None:
        return {"type": "array", "items": {"type": "number", "minimum": 0}, "minItems": 1}
    leaf: dict[str, Any] = {"type": "integer"} if spec_input.integer else {"type": "number"}
    if spec_input.kind == "nonnegative" and spec_input.relaxed_by is None:
        leaf["minimum"] = 0
    elif spec_input.kind == "cosine":
        leaf["minimum"], leaf["maximum"] = -1, 1
    return {"type": "array", "minItems": 1, "items": {"anyOf": [leaf, {"type": "array"}]}}


def camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


@cache
def request_model(spec: LossSpec) -> type[BaseModel]:
    """The request body of ``POST /loss/{name}``. Arrays are validated as ``Any`` (the
    codec turns them into numpy directly) but documented as nested lists."""
    fields: dict[str, Any] = {}
    for spec_input in spec.inputs:
        shape = "(" + ", ".join(spec_input.shape) + ")"
        description = f"{spec_input.description} Shape {shape}."
        if spec_input.optional is None:
            field = Field(description=description)
        else:
            field = Field(None, description=f"{description} Optional: all {spec_input.optional:g} when left out.")
        fields[spec_input.name] = (Annotated[Any, WithJsonSchema(array_schema(spec_input))], field)
    per_sample = (
        "Non-negative weights: one per sample, shape (N,), or, for a loss averaged over positions (the "
        "'...' axes), one per position, shaped as the inputs' leading axes, e.g. (N, T). With reduction 'none', "
        "the loss is each sample's weighted loss."
    )
    optional = [i.name for i in spec.inputs if i.optional is not None]
    instead = f" Weigh the scores with {' and '.join(optional)} instead." if optional else ""
    if spec.batch_level:
        weights = "Not accepted: this loss is one value for the whole batch." + instead
    elif spec.batch_param is not None:
        weights = f"{per_sample} Not accepted with params.{spec.batch_param} true (one value for the whole batch)."
    else:
        weights = per_sample
    fields["weights"] = (Annotated[Any, WithJsonSchema(array_schema(None))], Field(None, description=weights))
    if any(f.is_required() for f in spec.params.model_fields.values()):
        # Validate a missing params object as {}: the 422 then names the missing param
        # (e.g. params.class_weights) rather than the default factory failing.
        params_field = Field(default_factory=dict, validate_default=True, description="Loss parameters.")
    else:
        params_field = Field(default_factory=spec.params, description="Loss parameters.")
    fields["params"] = (spec.params, params_field)
    fields["reduction"] = (Reduction, Field("mean", description="mean: weighted mean; sum; none: per-sample."))
    fields["outputs"] = (
        list[Output],
        Field(default_factory=lambda: ["loss"], description="What to return: loss, per_sample, gradients."),
    )
    fields["dtype"] = (DtypeName, Field("float32", description="Precision the kernel runs in."))
    model: type[BaseModel] = create_model(
        f"{camel(spec.name)}Request",
        __config__=ConfigDict(extra="forbid", title=f"{camel(spec.name)}Request"),
        __doc__=f"Compute {spec.card.title}.",
        **fields,
    )
    return model


class LossResponse(BaseModel):
    loss: float | list[float] = Field(description="The reduced loss, or the per-sample list for reduction 'none'.")
    per_sample: list[float] | None = Field(None, description="Loss of each sample, when requested.")
    gradients: dict[str, Any] | None = Field(None, description="d(loss)/d(input) per differentiable input.")
    reduction: Reduction
    count: int = Field(description="Number of samples N (1 for a loss that is one value for the whole batch).")
    dtype: DtypeName


class InputCard(BaseModel):
    name: str
    shape: list[str]
    dtype: Literal["float", "int"]
    description: str


class LossCard(BaseModel):
    model_config = ConfigDict(title="LossCard")

    name: str
    title: str
    aliases: list[str]
    task: Task
    summary: str
    formula: str
    inputs: list[InputCard]
    params: dict[str, Any]
    properties: Properties
    use_cases: list[str]
    gradients: list[str]
    equivalents: dict[str, str]
    references: list[str]


class LossList(BaseModel):
    losses: list[LossCard]


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    providers: list[str]
    losses: int


Choices = tuple[tuple[str, tuple[str, ...]], ...]
"""The configured names of a loss's configured params (``Runtime.choices``)."""


def describe_choices(field: dict[str, Any], names: tuple[str, ...], how: str) -> None:
    """A configured param's schema lists the names configured on this server."""
    field["anyOf"] = [{"type": "string", "enum": list(names)}, {"type": "null"}]
    if names:
        field["description"] += f" Configured here: {', '.join(names)} (default: {names[0]})."
    else:
        field["description"] += f" None is configured here, so the loss answers 409: {how}."


@cache
def card(
    spec: LossSpec,
    choices: Choices = (),
    gradients: tuple[str, ...] | None = None,
    no_gradients: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A loss's card; from the runtime, ``choices`` fill in its configured params, ``gradients``
    are the inputs some configured variant differentiates (None: the declared ones) and
    ``no_gradients`` says which configured variants return none, and why."""
    params_schema = spec.params.model_json_schema()
    params_schema.pop("title", None)
    for name, names in choices:
        describe_choices(params_schema["properties"][name], names, spec.configured[name].how)
    if choices and no_gradients:
        field = params_schema["properties"][choices[0][0]]
        field["description"] += f" Without gradients here: {'; '.join(no_gradients)}."
    return LossCard(
        name=spec.name,
        title=spec.card.title,
        aliases=list(spec.aliases),
        task=spec.task,
        summary=spec.card.summary,
        formula=spec.card.formula,
        inputs=[
            InputCard(
                name=i.name,
                shape=list(i.shape),
                dtype="int" if i.integer else "float",
                description=i.description,
            )
            for i in spec.inputs
        ],
        params=params_schema,
        properties=spec.properties,
        use_cases=list(spec.card.use_cases),
        gradients=list(spec.differentiable if gradients is None else gradients),
        equivalents=spec.card.equivalents,
        references=list(spec.card.references),
    ).model_dump(mode="json")


BOOLEAN_PROPERTIES = tuple(name for name, f in Properties.model_fields.items() if f.annotation is bool)


def filter_model() -> type[BaseModel]:
    """Query parameters of ``GET /losses``: a task and any boolean property."""
    fields: dict[str, Any] = {"task": (Task | None, Field(None, description="Only losses for this task."))}
    for name in BOOLEAN_PROPERTIES:
        fields[name] = (bool | None, Field(None, description=f"Only losses whose {name} property is this."))
    model: type[BaseModel] = create_model("LossFilter", __config__=ConfigDict(extra="forbid"), **fields)
    return model


LossFilter = filter_model()


class CurveResponse(BaseModel):
    name: str
    variable: str = Field(description="What x is.")
    params: dict[str, Any] = Field(description="The params the curve is drawn with.")
    x: list[float]
    loss: list[float] = Field(description="The loss of one sample at each x.")
    gradient: list[float] | None = Field(description="d loss / dx at each x; null without gradients.")


class RecommendQuery(BaseModel):
    """Query parameters of ``GET /losses/recommend``."""

    model_config = ConfigDict(extra="forbid")

    task: Task | None = Field(None, description="The task; `imbalance` means classification with rare classes.")
    outliers: bool | None = Field(None, description="Regression targets have outliers or heavy-tailed noise.")
    imbalanced: bool | None = Field(None, description="Some classes (or the foreground) are rare.")
    output: OutputKind | None = Field(None, description="What the model outputs.")


class Recommendation(BaseModel):
    rank: int
    name: str
    title: str
    reason: str = Field(description="Why this loss fits the query.")
    params: dict[str, Any] = Field(description="Suggested params (the rest keep their defaults).")


class Recommendations(BaseModel):
    query: RecommendQuery = Field(description="The query as understood (an output kind may imply the task).")
    recommendations: list[Recommendation]
