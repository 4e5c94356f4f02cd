"""Request and response models of the monitoring API."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from service.monitors.baseline import DEFAULT_DRIFT_THRESHOLD, DEFAULT_THRESHOLD, DEFAULT_WINDOWS
from service.monitors.store import DEFAULT_LABEL_TTL_SECONDS

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
SEGMENT_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
RESERVED_KEYS = ("monitor", "loss")
MAX_SEGMENT_KEYS = 16
MAX_LABEL_TTL_SECONDS = 366 * 86400


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
    drift_threshold: float = Field(
        DEFAULT_DRIFT_THRESHOLD,
        gt=0,
        le=1,
        description="Flag a window whose loss distribution is farther than this from the baseline's, as a "
        "Kolmogorov-Smirnov distance (the largest gap between the two cumulative distributions: 0 to 1), and "
        "beyond the KS critical value at significance 0.001 for the two sample counts.",
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
    segments: list[str] = Field(
        default_factory=list,
        max_length=MAX_SEGMENT_KEYS,
        description="Tag keys observations may carry (e.g. model_version, region): windows, baselines and alerts "
        "are kept per combination of their values. Letters, digits and '_', as Prometheus label names.",
    )
    retention_seconds: int | None = Field(
        None,
        ge=1,
        le=100 * 366 * 86400,
        description="Windows that ended longer ago than this are deleted (None: kept); at least window_seconds.",
    )

    label_ttl_seconds: int = Field(
        DEFAULT_LABEL_TTL_SECONDS,
        ge=1,
        le=MAX_LABEL_TTL_SECONDS,
        description="How long predictions stored by id (POST /monitors/{name}/predictions) wait for their labels "
        "before they expire: 1 s to 366 days, default 7 days. It bounds the stored predictions to those that "
        "arrive within it.",
    )

    @field_validator("segments")
    @classmethod
    def _check_segments(cls, value: list[str]) -> list[str]:
        for key in value:
            if not SEGMENT_KEY.fullmatch(key) or key.startswith("__"):
                raise ValueError(f"{key!r}: a segment key is letters, digits and '_' (not first a digit or '__')")
            if key in RESERVED_KEYS:
                raise ValueError(f"{key!r} is taken by the monitor's own labels ({', '.join(RESERVED_KEYS)})")
        if len(set(value)) != len(value):
            raise ValueError("a segment key is given twice")
        return value

    @field_validator("retention_seconds")
    @classmethod
    def _check_retention(cls, value: int | None, info: ValidationInfo) -> int | None:
        window = info.data.get("window_seconds")
        if value is not None and window is not None and value < window:
            raise ValueError(f"must be at least window_seconds ({window}): every window would be deleted at once")
        return value


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
    drift: float | None = Field(
        None,
        description="KS distance of its loss distribution from the baseline's, read from the sketches (a lower "
        "bound of the raw samples'); None when not judged.",
    )
    drift_limit: float | None = Field(None, description="The distance above which this window has drifted.")
    drift_alert: bool | None = Field(None, description="Drifted (drift above drift_limit); None when not judged.")


class BaselineView(BaseModel):
    source: str
    windows: int
    threshold: float
    drift_threshold: float
    ready: bool
    count: int
    mean: float | None
    std: float | None


class AlertView(BaseModel):
    state: str = Field(description="'ok', 'alert' (the latest window is flagged) or 'pending' (no baseline yet).")
    window: str | None = Field(None, description="Start of the latest window, the one the state is about.")
    flagged_windows: int = Field(description="Windows flagged since the baseline.")
    drift_state: str = Field(
        description="'ok', 'drift' (the latest window's distribution has drifted) or 'pending' (no baseline yet)."
    )
    drift: float | None = Field(None, description="The latest judged window's KS distance from the baseline.")
    drift_limit: float | None = Field(None, description="The distance above which that window has drifted.")


class MonitorView(BaseModel):
    name: str
    loss: str
    params: dict[str, Any]
    window_seconds: int
    segments: list[str] = Field(description="The tag keys its observations may carry.")
    retention_seconds: int | None = Field(description="Windows older than this are deleted (None: kept).")
    label_ttl_seconds: int = Field(description="How long stored predictions wait for their labels.")
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


class SegmentView(BaseModel):
    tags: dict[str, str | None] = Field(description="Each segment key's value (null: left out by the observations).")
    count: int = Field(description="Samples recorded in this segment (also in windows since deleted).")
    mean: float | None
    alert: AlertView = Field(description="Its latest window against its own baseline.")


class SegmentList(BaseModel):
    name: str
    segments: list[SegmentView]


IDS_DESCRIPTION = "Prediction ids: strings of 1 to 128 characters, unique within the monitor while they wait."


class PredictionsRequest(BaseModel):
    """Predictions stored by id until their labels arrive (documented here; the route reads the
    raw body)."""

    model_config = ConfigDict(extra="allow", title="PredictionsRequest")

    ids: list[str] = Field(description=IDS_DESCRIPTION)
    predictions: list[Any] = Field(
        description="The loss's predictions, one sample per id; the loss's other inputs but targets (e.g. variance, "
        "input_lengths) are sent beside it, also one per id."
    )
    timestamp: str | float | None = Field(
        None, description="RFC 3339 or epoch seconds (default now): the window the labelled samples land in."
    )
    tags: dict[str, str | None] | None = Field(None, description="The segment the labelled samples land in.")


class PredictionsAccepted(BaseModel):
    accepted: int = Field(description="Ids stored by this request.")
    duplicates: int = Field(
        description="Ids not stored again: waiting already with the same content, or repeated in this request."
    )


class LabelsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", title="LabelsRequest")

    ids: list[str] = Field(description=IDS_DESCRIPTION)
    targets: list[Any] = Field(description="The loss's targets, one per id.")
    weights: list[float] | None = Field(None, description="Non-negative per-sample weights, one per id.")


class LabelsMatched(BaseModel):
    matched: int = Field(description="Ids whose prediction waited: recorded in its window and segment.")
    unmatched: int = Field(
        description="Ids with no waiting prediction: never stored, already labelled, expired, or past retention."
    )
    duplicates: int = Field(description="Repeats of an id earlier in this request (not recorded again).")
    loss: float | None = Field(description="The weighted mean of the matched samples' losses; null when none matched.")
