"""Pydantic models derived from the loss declarations: requests, responses, cards."""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model

from kernels.spec import Input, LossSpec, Properties, Task

Reduction = Literal["mean", "sum", "none"]
Output = Literal["loss", "per_sample", "gradients"]
DtypeName = Literal["float32", "float64"]


def array_schema(spec_input: Input | None) -> dict[str, Any]:
    if spec_input is None:
        return {"type": "array", "items": {"type": "number", "minimum": 0}, "minItems": 1}
    leaf = {"type": "integer"} if spec_input.integer else {"type": "number"}
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
        fields[spec_input.name] = (
            Annotated[Any, WithJsonSchema(array_schema(spec_input))],
            Field(description=f"{spec_input.description} Shape {shape}."),
        )
    fields["weights"] = (
        Annotated[Any, WithJsonSchema(array_schema(None))],
        Field(None, description="Non-negative per-sample weights, shape (N,). Not allowed with reduction 'none'."),
    )
    fields["params"] = (spec.params, Field(default_factory=spec.params, description="Loss parameters."))
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
    count: int = Field(description="Number of samples N.")
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


@cache
def card(spec: LossSpec) -> dict[str, Any]:
    params_schema = spec.params.model_json_schema()
    params_schema.pop("title", None)
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
        gradients=list(spec.differentiable),
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
