"""Configuration from the environment (prefix ``LOSSD_``)."""

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from kernels.cache import default_directory
from kernels.features import NAME


def comma_separated(value: Any) -> Any:
    """``a,b`` (the environment's form) as a list, blanks dropped; a list passes."""
    if not isinstance(value, str):
        return value
    return [part.strip() for part in value.split(",") if part.strip()]


def parse_feature_models(value: Any) -> Any:
    """``name=path.onnx,name2=path2.onnx`` (the environment's form) as a dict; a dict passes."""
    if not isinstance(value, str):
        return value
    models: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in value.split(","))):
        name, sep, path = (part.strip() for part in entry.partition("="))
        if not sep or not name or not path:
            raise ValueError(f"entry {entry!r} is not name=path.onnx")
        if name in models:
            raise ValueError(f"the name {name!r} is given twice")
        models[name] = path
    return models


def parse_composites(value: Any) -> Any:
    """Inline JSON (``{"name": {"terms": [...]}}``) or the path of a JSON file holding it."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return {}
    if not text.startswith("{"):
        path = Path(text).expanduser()
        if not path.is_file():
            raise ValueError(f"{text}: neither inline JSON nor an existing JSON file")
        text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOSSD_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    grpc_port: int = Field(
        8001, ge=0, le=65535, description="The Open Inference Protocol over gRPC (HTTP/2 without TLS) here; 0: off."
    )
    workers: int = Field(1, ge=1)
    provider: Literal["auto", "cpu", "cuda"] = "auto"
    intra_op_threads: int = Field(0, ge=0, description="onnxruntime intra-op threads per session; 0: one per core.")
    model_repository: Path | None = Field(None, description="Serve graphs exported by `lossd export` from here.")
    graph_cache: Path | None = Field(
        default_factory=default_directory,
        description="Graphs are built on first use and kept here across starts, checked by hash (default "
        "~/.cache/lossd/graphs); empty: build in memory only.",
    )
    max_elements: int = Field(50_000_000, ge=1, description="Most array elements one request may carry.")
    max_body_bytes: int = Field(
        64 * 1024 * 1024, ge=1, description="Largest request body, checked while it streams in (413 above)."
    )
    max_concurrency: int = Field(
        256, ge=1, description="Requests in flight per worker; above it 503 with Retry-After (health exempt)."
    )
    max_header_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest request line and headers together, counted as they arrive (431)."
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="A connection sends its first request's headers within this long of connecting (a later "
        "request's, of its first bytes); else it is closed (408 when a request had begun).",
    )
    body_timeout_seconds: float = Field(
        30.0, gt=0, description="A request's body arrives within this long of its headers; else 408."
    )
    receive_budget_bytes: int | None = Field(
        None,
        ge=1,
        description="Bytes of request bodies being received per worker, all connections together; above it 503 "
        "with Retry-After. Unset: 4 x LOSSD_MAX_BODY_BYTES.",
    )
    max_connections: int = Field(
        1000, ge=1, description="Open connections per worker; beyond it a new one gets 503 and is closed."
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated; when set, every endpoint but health needs `Authorization: Bearer <key>`.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated origins allowed by CORS; unset: CORS off."
    )
    otel_endpoint: str | None = Field(
        None,
        description="OpenTelemetry traces over OTLP/HTTP to this collector (e.g. http://collector:4318); unset: off "
        "unless the standard OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER=otlp ask for them.",
    )
    drain_seconds: float = Field(
        5.0,
        ge=0,
        description="After SIGTERM: readiness answers 503 while requests are still served this long, then the "
        "server stops gracefully (0: stop at once).",
    )
    docs: bool = Field(True, description="Serve /docs and /redoc (assets served locally, no CDN).")
    log_level: str = "info"
    access_log: bool = Field(False, description="Log every request (uvicorn's access log; costs ~14 us each).")
    database_url: str | None = Field(
        None,
        description="Where monitors live: sqlite:///path.db or postgresql://...; unset: a SQLite file under data_dir.",
        pattern=r"^(sqlite:///|postgresql://|postgres://)",
    )
    data_dir: Path = Field(Path("data"), description="Directory of the default SQLite database.")
    max_segments: int = Field(
        100, ge=1, description="Most segments (combinations of tag values) one monitor may have; beyond it a 422."
    )
    feature_models: Annotated[dict[str, Path], NoDecode] = Field(
        default_factory=dict,
        description="Feature extractors for `perceptual`: `name=path.onnx,...` (local ONNX files; the first is the "
        "default). Nothing is downloaded.",
    )

    composites: Annotated[dict[str, Any], NoDecode] = Field(
        default_factory=dict,
        description='Named composites: inline JSON or a JSON file path, `{"name": {"terms": [{"loss": "dice", '
        '"weight": 0.5, "params": {}, "inputs": {}}, ...], "title"?, "task"?, "summary"?, "aliases"?, '
        '"use_cases"?}}`; each is served like any loss.',
    )

    @property
    def receive_budget(self) -> int:
        """LOSSD_RECEIVE_BUDGET_BYTES, or its default: room for four of the largest bodies."""
        return self.receive_budget_bytes or 4 * self.max_body_bytes

    @field_validator("graph_cache", mode="before")
    @classmethod
    def _no_cache(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("composites", mode="before")
    @classmethod
    def _parse_composites(cls, value: Any) -> Any:
        return parse_composites(value)

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return comma_separated(value)

    @field_validator("feature_models", mode="before")
    @classmethod
    def _parse_feature_models(cls, value: Any) -> Any:
        return parse_feature_models(value)

    @field_validator("feature_models")
    @classmethod
    def _check_feature_models(cls, value: dict[str, Path]) -> dict[str, Path]:
        for name, path in value.items():
            if not NAME.fullmatch(name):
                raise ValueError(f"{name}={path}: a name may only use letters, digits, '_' and '-'")
            if not path.expanduser().is_file():
                raise ValueError(f"{name}={path}: no such file")
        return {name: path.expanduser().resolve() for name, path in value.items()}

    @model_validator(mode="after")
    def _budget_holds_a_body(self) -> "Settings":
        if self.receive_budget < self.max_body_bytes:
            raise ValueError(
                f"LOSSD_RECEIVE_BUDGET_BYTES ({self.receive_budget}) is below LOSSD_MAX_BODY_BYTES "
                f"({self.max_body_bytes}): the largest body could never be received"
            )
        return self
