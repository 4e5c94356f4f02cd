"""Request and response models of the monitoring API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.monitors.baseline import DEFAULT_THRESHOLD, DEFAULT_WINDOWS

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


class BaselineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    windows: int = Field(
        DEFAULT_WINDOWS, ge=1, le=10_000, description="The baseline is the monitor's first this many windows with data."
    )
    threshold: float = Field(
        DEFAULT_THRESHOLD,
        gt=0,
        le=1e6,
        description="Flag a window whose mean exceeds the baseline mean by more than "
        "this many standard errors (baseline std / sqrt(window count)).",
    )
    reference: dict[str, Any] | None = Field(
        None,
        description="A reference batch (the loss's inputs and optional weights, as in an observation) to use as the "
        "baseline instead of the first windows.",
    )


class MonitorCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="Letters, digits, '_', '.', '-'; at most 100 characters.")
    loss: str = Field(description="A loss of the registry (name or alias).")
    params: dict[str, Any] = Field(default_factory=dict, description="The loss's params, fixed for the monitor.")
    window_seconds: int = Field(
        3600, ge=1, le=10 * 366 * 86400, description="Window length; windows align on the epoch."
    )
    baseline: BaselineConfig = Field(default_factory=BaselineConfig)


class Summary(BaseModel):
    count: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None


class Window(Summary):
    start: str = Field(description="RFC 3339, UTC.")
    end: str
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    limit: float | None = Field(None, description="The mean above which this window is flagged (None: not judged).")
    alert: bool | None = Field(None, description="Flagged against the baseline; None for baseline windows.")


class BaselineView(BaseModel):
    source: str
    windows: int
    threshold: float
    ready: bool
    count: int
    mean: float | None
    std: float | None


class AlertView(BaseModel):
    state: str = Field(description="'ok', 'alert' (the latest window is flagged) or 'pending' (no baseline yet).")
    window: str | None = Field(None, description="Start of the latest window, the one the state is about.")
    flagged_windows: int = Field(description="Windows flagged since the baseline.")


class MonitorView(BaseModel):
    name: str
    loss: str
    params: dict[str, Any]
    window_seconds: int
    created: str
    baseline: BaselineView
    alert: AlertView
    totals: Summary | None = None
    windows: list[Window] | None = Field(None, description="The most recent windows, oldest first.")


class MonitorList(BaseModel):
    monitors: list[MonitorView]


class WindowList(BaseModel):
    name: str
    step: int
    windows: list[Window]


class Accepted(BaseModel):
    accepted: int = Field(description="Samples recorded (1 for a loss that is one value per batch).")
    loss: float = Field(description="The batch's loss, reduced as POST /loss/{name} with reduction 'mean' does.")
    window: str = Field(description="Start of the window the batch landed in.")
