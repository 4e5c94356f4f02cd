"""Checkers for the boolean claims of a loss card (``kernels.spec.Properties``), run against the kernel.

Every check reduces the loss to one sample and one dimension: a :class:`Line` fixes a valid target and
walks the differentiable input along ``x(t) = origin + t * direction`` for ``t`` in ``[lo, hi]``. Along it
the loss is ``phi(t)`` (the per-sample loss, ``reduction="none"``) and its slope ``phi'(t)`` is the
kernel's own gradient projected on ``direction`` -- the checks never differentiate the loss numerically,
they look at the gradient the kernel returns. Each loss has a :class:`Domain` in ``LOSS_DOMAINS``
describing its *default* form (default params: probabilities, not logits, for the cross-entropies and
focal) and giving the lines to walk:

* ``Real``: regression, ``x = y + t`` (``t`` is the residual), ``t`` in the whole real line, with the
  loss's known kinks (residual 0, Huber's ``+-delta``) as probe points.
* ``BinaryProbability``: ``x = t`` in ``[eps, 1 - eps]``, the interval where the default clip lets the
  probability through (outside it the kernel clips on purpose and returns a zero gradient, so the clip
  boundary is the end of the domain, not a kink inside it); targets 0, 1 and soft.
* ``Simplex``: class probabilities on the probability simplex (the kernel renormalises, so the simplex
  is the domain the card speaks of), along lines towards one class (``p = t e_k + (1 - t) r``) and
  along random chords, with every component in ``[eps, 1 - eps]``; one-hot, soft or label targets.
* ``ChannelMasks``: channel-first probability maps ``(C, pixels)`` in ``[0, 1]`` (overlap losses: no
  clip, so the domain is the closed box), along uniform, single-pixel and random lines; targets are hard
  or soft masks in which every class is present (at least one foreground pixel): for a class absent from
  the target the soft overlap is a near-step ``sum p / (sum p + s_dr)`` at ``p = 0`` (the cards say so,
  and a test shows it).
* ``Images``: ``(C, H, W)`` images, ``predictions = targets + t d`` with ``d`` of unit RMS (``t`` is the
  RMS residual, any real), around textured, smooth and flat target images in ``[0, 1]``.

A check looks for a counterexample: first over a few canonical lines and probe points (kinks, a central
grid, geometric ladders towards both ends of the domain), then with hypothesis (``find``, derandomised,
so the search is deterministic). A property *holds* when no counterexample is found. The definitions
(precise versions are in each ``_*_violation`` docstring):

* ``bounded_below``: the loss is finite, and walking towards any end of the domain its running minimum
  stops decreasing (a finite lower bound, not necessarily 0).
* ``convex``: midpoint convexity ``phi((a + b) / 2) <= (phi(a) + phi(b)) / 2`` for all pairs on a line.
* ``differentiable``: the gradient is continuous: ``|phi'(t + h) - phi'(t - h)|`` shrinks with ``h``.
* ``smooth_gradient``: the gradient is Lipschitz with a modest constant: the difference quotient
  ``|phi'(t + h) - phi'(t)| / h`` anywhere (near kinks, far out, near probability 0 and 1) stays within
  10x its largest value on the line's central region.
* ``robust_to_outliers``: walking away from the target (the loss grows), the gradient magnitude stops
  growing: on the far half of a geometric ladder (residuals 1e3..1e6; probabilities within 5e-6 of the
  wrong end, down to eps) it is at most 1.25x its largest value on the near half.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from hypothesis import HealthCheck, find, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from kernels.classification import BinaryCrossEntropyParams, CrossEntropyParams, SparseCrossEntropyParams
from kernels.imbalance import FocalParams
from kernels.regression import HuberParams
from kernels.spec import LossSpec
from tests.kernels.harness import evaluate

Array = npt.NDArray[Any]
Floats = npt.NDArray[np.float64]
Evaluator = Callable[[Floats, Array], tuple[Floats, Floats]]
"""``(predictions (K, ...), targets (K, ...)) -> (per-sample loss (K,), d loss_k / d predictions_k)``."""

SEARCH = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
"""The hypothesis search behind every check (after the canonical probes): deterministic for CI."""

CENTRAL_MARGIN = 0.05
"""Probabilities at least this far from 0 and 1 make a line's central region."""
REAL_CENTRAL = 3.0
"""Residuals in [-3, 3] make a regression line's central region."""


# --- lines and domains -----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Line:
    """A 1-D slice of one sample's domain: ``x(t) = origin + t * direction``, ``t`` in ``[lo, hi]``."""

    target: Array
    """One sample's target: shape ``(1,)`` for element-wise losses, ``(C,)`` or ``()`` (a label)."""
    origin: Floats
    direction: Floats
    lo: float
    hi: float
    """Ends of the domain, included (clipping starts beyond them); infinite for regression."""
    central: tuple[float, float]
    """The line's central region (residual in [-3, 3]; probabilities in [0.05, 0.95])."""
    kinks: tuple[float, ...] = ()
    """Values of ``t`` where the kernel switches formula (probed on purpose)."""
    extremes: tuple[float | None, float | None] = (None, None)
    """Valid inputs beyond each end (probability 0 or 1, residual 1e12), for ``bounded_below`` only."""

    @property
    def center(self) -> float:
        return 0.5 * (self.central[0] + self.central[1])

    def end(self, side: int) -> float:
        return self.hi if side else self.lo

    def points(self, ts: Floats | list[float]) -> Floats:
        return self.origin + np.multiply.outer(np.asarray(ts, np.float64), self.direction)

    def ladder(self, side: int) -> Floats:
        """From the center geometrically towards one end: the center, then ``1, 10, ..., 1e6`` away
        for an infinite end; ``(center - end) * 10**-k`` (k = 1..7) from a finite end, then the end."""
        end, m = self.end(side), self.center
        if math.isinf(end):
            sign = math.copysign(1.0, end)
            return np.array([m] + [m + sign * 10.0**k for k in range(7)])
        return np.array([end + (m - end) * 10.0**-k for k in range(8)] + [end])

    def probes(self) -> list[float]:
        """Kinks, a central grid and both ladders: where the checks look first."""
        grid = np.linspace(*self.central, 9)
        ts = {*self.kinks, *grid.tolist(), *self.ladder(0).tolist(), *self.ladder(1).tolist()}
        return sorted(ts)

    def describe(self, ts: list[float]) -> str:
        xs = ", ".join(np.array2string(x, precision=17, separator=", ") for x in self.points(ts))
        target = np.array2string(self.target, precision=17, separator=", ")
        return f"target={target}, predictions at t={ts}: {xs}"


def _interval(origin: Floats, direction: Floats, low: float, high: float) -> tuple[float, float]:
    """The ``t`` for which every component of ``origin + t * direction`` lies in ``[low, high]``."""
    lo, hi = -math.inf, math.inf
    for o, v in zip(origin.tolist(), direction.tolist(), strict=True):
        if v > 0:
            lo, hi = max(lo, (low - o) / v), min(hi, (high - o) / v)
        elif v < 0:
            lo, hi = max(lo, (high - o) / v), min(hi, (low - o) / v)
    return lo, hi


class Domain(ABC):
    """The valid inputs of a loss's default form, as lines through one sample's domain."""

    @abstractmethod
    def canonical_lines(self) -> tuple[Line, ...]:
        """A few fixed lines, probed exhaustively before the random search."""

    @abstractmethod
    def lines(self) -> st.SearchStrategy[Line]:
        """Random lines for hypothesis."""

    @abstractmethod
    def mismatch(self, spec: LossSpec) -> str | None:
        """Why this domain does not describe the spec's default form, or None."""


def _default(spec: LossSpec, name: str) -> Any:
    return getattr(spec.params(), name, None)


def _score_mismatch(spec: LossSpec, eps: float, class_axis: bool, labels: bool) -> str | None:
    predictions, targets = spec.inputs[0], spec.inputs[1]
    if predictions.kind not in ("score", "probability"):
        return f"predictions are {predictions.kind!r}, not probabilities"
    if not predictions.holds_probabilities(spec.params()):
        return "the default form takes logits"
    if (predictions.shape[-1] == "C") != class_axis:
        return f"predictions have shape {predictions.shape}"
    if (targets.kind == "label") != labels:
        return f"targets are {targets.kind!r}"
    if _default(spec, "eps") != eps:
        return f"default eps is {_default(spec, 'eps')}, the domain uses {eps}"
    return None


@dataclass(frozen=True)
class Real(Domain):
    """Regression: ``predictions = targets + t``, any residual ``t``."""

    kinks: tuple[float, ...] = (0.0,)

    def line(self, y: float) -> Line:
        return Line(
            target=np.array([y]),
            origin=np.array([y]),
            direction=np.array([1.0]),
            lo=-math.inf,
            hi=math.inf,
            central=(-REAL_CENTRAL, REAL_CENTRAL),
            kinks=self.kinks,
            extremes=(-1e12, 1e12),
        )

    def canonical_lines(self) -> tuple[Line, ...]:
        return (self.line(0.0), self.line(2.5))

    def lines(self) -> st.SearchStrategy[Line]:
        return st.floats(-100.0, 100.0).map(self.line)

    def mismatch(self, spec: LossSpec) -> str | None:
        kind = spec.inputs[0].kind
        return None if kind == "real" else f"predictions are {kind!r}, not real"


@dataclass(frozen=True)
class BinaryProbability(Domain):
    """Element-wise probabilities: ``predictions = t`` in ``[eps, 1 - eps]``, targets in ``[0, 1]``."""

    eps: float

    def line(self, y: float) -> Line:
        return Line(
            target=np.array([y]),
            origin=np.array([0.0]),
            direction=np.array([1.0]),
            lo=self.eps,
            hi=1.0 - self.eps,
            central=(CENTRAL_MARGIN, 1.0 - CENTRAL_MARGIN),
            extremes=(0.0, 1.0),
        )

    def canonical_lines(self) -> tuple[Line, ...]:
        return (self.line(1.0), self.line(0.0), self.line(0.3))

    def lines(self) -> st.SearchStrategy[Line]:
        return st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0)).map(self.line)

    def mismatch(self, spec: LossSpec) -> str | None:
        return _score_mismatch(spec, self.eps, class_axis=False, labels=False)


@dataclass(frozen=True)
class Simplex(Domain):
    """Class probabilities (shape ``(C,)``) on the simplex, every component in ``[eps, 1 - eps]``."""

    eps: float
    labels: bool = False
    classes: int = 3

    def line(self, target: Array, origin: Floats, direction: Floats) -> Line:
        inner = self.eps * (1 + 1e-6)  # rounding of origin + t * direction must not reach the clip
        lo, hi = _interval(origin, direction, inner, 1.0 - inner)
        outer = _interval(origin, direction, 0.0, 1.0)
        towards_vertex = bool((origin == 0).any())  # class lines end at a vertex and at a face
        return Line(
            target=target,
            origin=origin,
            direction=direction,
            lo=lo,
            hi=hi,
            central=_interval(origin, direction, CENTRAL_MARGIN, 1.0 - CENTRAL_MARGIN),
            extremes=outer if towards_vertex else (None, None),
        )

    def class_line(self, target: Array, k: int, rest: Floats) -> Line:
        """``p = t e_k + (1 - t) r``: the probability of class ``k`` against a fixed mix ``r`` of the rest."""
        r = np.insert(rest / rest.sum(), k, 0.0)
        return self.line(target, r, np.eye(self.classes)[k] - r)

    def chord(self, target: Array, base: Floats, direction: Floats) -> Line:
        """Through an interior point along a direction of the simplex (components summing to 0)."""
        v = direction - direction.mean()
        norm = float(np.linalg.norm(v))
        if norm < 1e-3:
            v, norm = np.eye(self.classes)[0] - np.eye(self.classes)[1], math.sqrt(2)
        return self.line(target, base / base.sum(), v / norm)

    def target(self, k: int, soft: Floats | None = None) -> Array:
        if self.labels:
            return np.array(k, dtype=np.int64)
        target: Floats = np.eye(self.classes)[k] if soft is None else soft / soft.sum()
        return target

    def canonical_lines(self) -> tuple[Line, ...]:
        c = self.classes
        uniform, rest = np.full(c, 1.0 / c), np.ones(c - 1)
        swap = np.eye(c)[0] - np.eye(c)[1]
        targets = [self.target(0), self.target(1, None if self.labels else np.arange(1.0, c + 1))]
        return tuple(
            line for target in targets for line in (self.class_line(target, 0, rest), self.chord(target, uniform, swap))
        )

    def lines(self) -> st.SearchStrategy[Line]:
        c = self.classes

        @st.composite
        def draw_line(draw: st.DrawFn) -> Line:
            def vector(n: int, low: float) -> Floats:
                return np.array(draw(st.lists(st.floats(low, 1.0), min_size=n, max_size=n)))

            k = draw(st.integers(0, c - 1))
            soft = None if self.labels or draw(st.booleans()) else vector(c, 0.0) + 1e-3
            target = self.target(k, soft)
            towards = draw(st.one_of(st.just(k), st.integers(0, c - 1)))
            if draw(st.booleans()):
                return self.class_line(target, towards, vector(c - 1, 0.2))
            return self.chord(target, vector(c, 0.2), vector(c, -1.0))

        return draw_line()

    def mismatch(self, spec: LossSpec) -> str | None:
        return _score_mismatch(spec, self.eps, class_axis=True, labels=self.labels)


@dataclass(frozen=True)
class ChannelMasks(Domain):
    """Overlap losses: probability maps of shape ``(classes, pixels)`` in ``[0, 1]``; targets are masks in
    which every class has at least one foreground pixel (hard, or soft elsewhere)."""

    classes: int = 2
    pixels: int = 3

    @property
    def shape(self) -> tuple[int, int]:
        return (self.classes, self.pixels)

    def line(self, target: Array, origin: Floats, direction: Floats) -> Line:
        lo, hi = _interval(origin.ravel(), direction.ravel(), 0.0, 1.0)
        central = _interval(origin.ravel(), direction.ravel(), CENTRAL_MARGIN, 1.0 - CENTRAL_MARGIN)
        return Line(target=target, origin=origin, direction=direction, lo=lo, hi=hi, central=central)

    def canonical_target(self) -> Array:
        """Class k's foreground is pixel k (and, for the last class, every later pixel)."""
        target = np.zeros(self.shape)
        for k in range(self.classes):
            target[k, k] = 1.0
        target[-1, self.classes :] = 1.0
        return target

    def canonical_lines(self) -> tuple[Line, ...]:
        target = self.canonical_target()
        half = np.full(self.shape, 0.5)
        background = np.zeros(self.shape)
        background[0, 1] = 1.0  # a pixel outside class 0's mask
        foreground = np.zeros(self.shape)
        foreground[0, 0] = 1.0
        chord = np.linspace(-1.0, 1.0, target.size).reshape(self.shape)
        return (
            self.line(target, np.zeros(self.shape), np.ones(self.shape)),  # uniform p = t
            self.line(target, half, background),
            self.line(target, half, foreground),
            self.line(target, half, chord / np.linalg.norm(chord)),
        )

    def lines(self) -> st.SearchStrategy[Line]:
        n = self.classes * self.pixels

        @st.composite
        def draw_line(draw: st.DrawFn) -> Line:
            def vector(low: float, high: float) -> Floats:
                return np.array(draw(st.lists(st.floats(low, high), min_size=n, max_size=n))).reshape(self.shape)

            hard = draw(st.booleans())
            target = (vector(0.0, 1.0) > 0.5).astype(np.float64) if hard else vector(0.0, 1.0)
            for k, pixel in enumerate(draw(st.lists(st.integers(0, self.pixels - 1), min_size=self.classes,
                                                    max_size=self.classes))):  # fmt: skip
                target[k, pixel] = 1.0  # every class present
            origin = vector(0.1, 0.9)
            kind = draw(st.sampled_from(["uniform", "pixel", "random"]))
            if kind == "uniform":
                direction = np.ones(self.shape)
            elif kind == "pixel":
                direction = np.zeros(self.shape)
                direction[draw(st.integers(0, self.classes - 1)), draw(st.integers(0, self.pixels - 1))] = 1.0
            else:
                direction = vector(-1.0, 1.0)
                norm = float(np.linalg.norm(direction))
                direction = direction / norm if norm > 1e-3 else np.ones(self.shape)
            return self.line(target, origin, direction)

        return draw_line()

    def mismatch(self, spec: LossSpec) -> str | None:
        predictions, targets = spec.inputs[0], spec.inputs[1]
        if predictions.shape[:2] != ("N", "C") or targets.shape != predictions.shape:
            return f"predictions have shape {predictions.shape}, targets {targets.shape}"
        if not predictions.holds_probabilities(spec.params()):
            return "the default form takes logits"
        if targets.kind != "probability":
            return f"targets are {targets.kind!r}"
        return None


@dataclass(frozen=True)
class Images(Domain):
    """Image losses: ``predictions = targets + t d`` for ``(channels, size, size)`` images, ``d`` of unit RMS,
    ``t`` any real; targets are textured, smooth or flat images in ``[0, 1]``."""

    size: int = 12
    channels: int = 1
    central_residual: float = 0.5

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)

    def line(self, target: Floats, direction: Floats) -> Line:
        rms = float(np.sqrt(np.mean(direction**2)))
        c = self.central_residual
        return Line(
            target=target,
            origin=target,
            direction=direction / rms,
            lo=-math.inf,
            hi=math.inf,
            central=(-c, c),
            extremes=(-1e12, 1e12),
        )

    def targets(self) -> tuple[Floats, Floats, Floats]:
        u, v = np.meshgrid(np.linspace(0, 1, self.size), np.linspace(0, 1, self.size), indexing="ij")
        smooth = np.broadcast_to(0.2 + 0.4 * u + 0.2 * v, self.shape).copy()
        textured = np.broadcast_to(0.5 + 0.3 * np.sin(7 * u) * np.cos(5 * v), self.shape).copy()
        return smooth, textured, np.full(self.shape, 0.4)

    def canonical_lines(self) -> tuple[Line, ...]:
        smooth, textured, flat = self.targets()
        ramp = np.linspace(-1.0, 1.0, smooth.size).reshape(self.shape)
        checker = np.indices(self.shape).sum(axis=0) % 2 * 2.0 - 1.0
        offset = np.ones(self.shape)
        return (
            self.line(textured, checker),
            self.line(smooth, ramp),
            self.line(flat, checker),
            self.line(textured, offset),
        )

    def lines(self) -> st.SearchStrategy[Line]:
        n = self.channels * self.size * self.size

        @st.composite
        def draw_line(draw: st.DrawFn) -> Line:
            def vector(low: float, high: float) -> Floats:
                return np.array(draw(st.lists(st.floats(low, high), min_size=n, max_size=n))).reshape(self.shape)

            target = draw(st.sampled_from(self.targets())) if draw(st.booleans()) else vector(0.0, 1.0)
            direction = vector(-1.0, 1.0)
            if float(np.sqrt(np.mean(direction**2))) < 1e-3:
                direction = np.ones(self.shape)
            return self.line(target, direction)

        return draw_line()

    def mismatch(self, spec: LossSpec) -> str | None:
        predictions = spec.inputs[0]
        if predictions.shape != ("N", "C", "H", "W") or predictions.kind != "real":
            return f"predictions are {predictions.kind!r} of shape {predictions.shape}, not real images"
        window = getattr(spec.params(), "window_size", 1)
        if self.size < window:
            return f"images of {self.size} pixels are smaller than the default window {window}"
        return None


# --- evaluating a line -----------------------------------------------------------------------------


def kernel_evaluator(spec: LossSpec) -> Evaluator:
    """The kernel (default params, float64, ``reduction="none"``) as ``(predictions, targets) -> (loss, grad)``."""
    if len(spec.differentiable) != 1 or len(spec.inputs) != 2:
        raise NotImplementedError(f"{spec.name}: the property checks expect one differentiable input and a target")
    (varied,) = spec.differentiable
    (target,) = (i.name for i in spec.inputs if i.name != varied)

    def run(predictions: Floats, targets: Array) -> tuple[Floats, Floats]:
        result = evaluate(spec.name, {varied: predictions, target: targets}, reduction="none")
        return result.per_sample, result.gradients[varied]

    return run


def _phi(evaluator: Evaluator, line: Line, points: Floats) -> tuple[Floats, Floats]:
    """The loss at ``points`` (``(K, ...)``, all with the line's target) and its slope along the line."""
    targets = np.broadcast_to(line.target, (len(points), *line.target.shape)).copy()
    values, grads = evaluator(points, targets)
    slopes = (grads * line.direction).reshape(len(points), -1).sum(axis=1)
    return np.asarray(values, np.float64).reshape(len(points)), slopes


def _phi_t(evaluator: Evaluator, line: Line, ts: list[float]) -> tuple[Floats, Floats]:
    return _phi(evaluator, line, line.points(ts))


def _near_far(values: Floats) -> tuple[Floats, Floats]:
    split = (len(values) + 1) // 2
    return values[:split], values[split:]


# --- the properties --------------------------------------------------------------------------------

Case = tuple[float, ...]
"""What a check probes on a line: an end (0 = lo, 1 = hi), a point, a point and a step, or two points."""


def _bounded_below_violation(evaluator: Evaluator, line: Line, case: Case) -> str | None:
    """Walking from the center to one end (the ladder, then any valid input beyond the end), the loss
    must be finite, and its minimum over the far half (plus beyond) must not undercut the minimum over
    the near half by more than ``1e-3 * (1 + |min near|)``: a loss that keeps decreasing towards an
    end (like ``-|d|`` or ``-log(1 + |d|)``) has no finite lower bound."""
    side = int(case[0])
    ts = line.ladder(side).tolist()
    values, _ = _phi_t(evaluator, line, ts)
    extreme = line.extremes[side]
    if extreme is not None:
        beyond = line.points([extreme])
        if line.lo > -math.inf:  # probabilities: a vertex computed as -1e-17 is the vertex
            beyond = np.clip(beyond, 0.0, None)
        value, _ = _phi(evaluator, line, beyond)
        ts, values = [*ts, extreme], np.concatenate([values, value])
    if not np.isfinite(values).all():
        bad = int(np.argmin(np.isfinite(values)))
        return f"loss is {values[bad]} at {line.describe([ts[bad]])}"
    near, far = _near_far(values)
    if far.min() < near.min() - 1e-3 * (1.0 + abs(near.min())):
        i, j = int(np.argmin(near)), len(near) + int(np.argmin(far))
        return (
            f"loss keeps decreasing towards t={line.end(side)}: {values[i]} at t={ts[i]}, then {values[j]} "
            f"at t={ts[j]} ({line.describe([ts[i], ts[j]])})"
        )
    return None


def _convex_violation(evaluator: Evaluator, line: Line, case: Case) -> str | None:
    """Midpoint convexity: ``phi((a + b) / 2) <= (phi(a) + phi(b)) / 2 + 1e-9 * (|phi(a)| + |phi(b)|)
    + 1e-12`` (the midpoint of the two prediction arrays, on the same target)."""
    a, b = line.points([case[0], case[1]])
    values, _ = _phi(evaluator, line, np.stack([a, b, 0.5 * (a + b)]))
    fa, fb, fm = values.tolist()
    chord = 0.5 * (fa + fb)
    if not fm <= chord + 1e-9 * (abs(fa) + abs(fb)) + 1e-12:
        return (
            f"f(midpoint) = {fm!r} > (f(a) + f(b)) / 2 = {chord!r} (f(a) = {fa!r}, f(b) = {fb!r}); "
            f"{line.describe([case[0], case[1], 0.5 * (case[0] + case[1])])}"
        )
    return None


DIFF_STEP, DIFF_REFINE, DIFF_SHRINK = 1e-4, 1e-3, 0.1


def _differentiable_violation(evaluator: Evaluator, line: Line, case: Case) -> str | None:
    """A continuous gradient: at an interior point ``t`` the jump ``J(h) = |phi'(t + h) - phi'(t - h)|``
    must shrink with ``h``: ``J(h / 1000) <= 0.1 J(h) + 1e-9 (1 + |phi'(t)|)`` for
    ``h = min(1e-4, room / 2)``. A jump (MAE's sign at 0) keeps ``J`` constant; a Lipschitz gradient
    shrinks it 1000-fold; only a gradient continuous with Hoelder exponent below 1/3 would be missed."""
    t = case[0]
    room = min(t - line.lo, line.hi - t)
    if not room > 0:
        return None  # an end of the domain: one-sided, nothing to compare
    h = min(DIFF_STEP, room / 2)
    ts = [t - h, t + h, t - h * DIFF_REFINE, t + h * DIFF_REFINE, t]
    _, slopes = _phi_t(evaluator, line, ts)
    g = slopes.tolist()
    coarse, fine = abs(g[1] - g[0]), abs(g[3] - g[2])
    if not fine <= DIFF_SHRINK * coarse + 1e-9 * (1.0 + abs(g[4])):
        return (
            f"gradient jumps at t={t!r}: |g(t+h) - g(t-h)| = {coarse!r} for h={h!r} and {fine!r} for "
            f"h={h * DIFF_REFINE!r} (g(t-h)={g[2]!r}, g(t+h)={g[3]!r}); {line.describe([t])}"
        )
    return None


SMOOTH_GROWTH = 10.0


def _central_lipschitz(evaluator: Evaluator, line: Line) -> float:
    ts = np.linspace(*line.central, 65)
    _, slopes = _phi(evaluator, line, line.points(ts))
    return float(np.max(np.abs(np.diff(slopes)) / np.diff(ts)))


def _smooth_violation(evaluator: Evaluator, line: Line, case: Case) -> str | None:
    """A Lipschitz gradient with a modest constant: the difference quotient
    ``Q = |phi'(t + h) - phi'(t)| / h`` at any ``t`` and step ``h`` (both points in the domain) must
    stay within ``10 L + 1e-6``, where ``L`` is the largest quotient between neighbours of a 65-point
    grid over the line's central region. MAE's jump gives ``2 / h``; a ``-y/p`` gradient gives about
    ``y/p**2`` (1e14 at the clip), ``d**4`` gives ``12 d**2`` far out: all unbounded as the probe
    moves; MSE, Huber and log-cosh stay at their central constant."""
    t, h = case
    if t + h <= line.hi:
        ts = [t, t + h]
    elif t - h >= line.lo:
        ts = [t - h, t]
    else:
        return None
    points = line.points(ts)
    direction = line.direction
    step = abs(
        float(np.dot((points[1] - points[0]).ravel(), direction.ravel()) / np.dot(direction.ravel(), direction.ravel()))
    )
    if step == 0.0:
        return None
    _, slopes = _phi(evaluator, line, points)
    g = slopes.tolist()
    quotient = abs(g[1] - g[0]) / step
    bound = SMOOTH_GROWTH * _central_lipschitz(evaluator, line) + 1e-6
    if not quotient <= bound:
        return (
            f"|g(t+h) - g(t)| / h = {quotient:.6g} at t={ts[0]!r}, h={step:.3g} (g: {g[0]!r} -> {g[1]!r}), "
            f"above {bound:.6g} = 10 x the central Lipschitz constant; {line.describe(ts)}"
        )
    return None


ROBUST_GROWTH = 1.25


def _robust_violation(evaluator: Evaluator, line: Line, case: Case) -> str | None:
    """A bounded gradient far from the target: walking from the center to one end along the ladder
    (residual 1, 10, ..., 1e6; probability within (center - end) * 10**-k of the end, k = 1..7, then the
    end), if the loss grows (that end is away from the target), the largest ``|phi'|`` on the far half
    (residual 1e3..1e6; within 5e-6 of the end, down to the end) must be at most 1.25x the largest on
    the near half: a bounded gradient has converged by then, MSE's grew 1e4x, a ``-y/p`` gradient 500x."""
    side = int(case[0])
    ts = line.ladder(side).tolist()
    values, slopes = _phi_t(evaluator, line, ts)
    if not values[-1] > values[0] + 1e-9 * (1.0 + abs(values[0])):
        return None  # the loss does not grow this way: not away from the target
    near, far = _near_far(np.abs(slopes))
    if not far.max() <= ROBUST_GROWTH * near.max() + 1e-12:
        i, j = int(np.argmax(near)), len(near) + int(np.argmax(far))
        return (
            f"gradient grows without bound away from the target: |g| = {near.max():.6g} at t={ts[i]!r}, "
            f"{far.max():.6g} at t={ts[j]!r} (loss {values[i]:.6g} -> {values[j]:.6g}); "
            f"{line.describe([ts[i], ts[j]])}"
        )
    return None


# --- random probe points ---------------------------------------------------------------------------


def _t_value(draw: st.DrawFn, line: Line) -> float:
    """A point of the line: central, near (or at) an end (log-uniform distance), or at or near a kink
    (log-uniform distance 1e-9..0.1)."""
    kinds = ["central", "end", "end", *(["kink"] if line.kinks else [])]
    kind = draw(st.sampled_from(kinds))
    if kind == "central":
        return draw(st.floats(*line.central))
    if kind == "kink":
        offset = draw(st.one_of(st.just(0.0), st.floats(1.0, 9.0).map(lambda u: math.pow(10.0, -u))))
        return draw(st.sampled_from(line.kinks)) + draw(st.sampled_from([1.0, -1.0])) * offset
    end = line.end(draw(st.integers(0, 1)))
    if math.isinf(end):
        return line.center + math.copysign(math.pow(10.0, draw(st.floats(-1.0, 6.0))), end)
    u = draw(st.one_of(st.floats(0.0, 7.5), st.just(math.inf)))
    return end + (line.center - end) * math.pow(10.0, -u)


def _side_case(draw: st.DrawFn, line: Line) -> Case:
    return (float(draw(st.integers(0, 1))),)


def _point_case(draw: st.DrawFn, line: Line) -> Case:
    return (_t_value(draw, line),)


def _pair_case(draw: st.DrawFn, line: Line) -> Case:
    return (_t_value(draw, line), _t_value(draw, line))


SMOOTH_STEPS = (1e-7, 1e-4, 1e-2)
"""Canonical steps, smallest first (the sharpest counterexample is reported)."""


def _step_case(draw: st.DrawFn, line: Line) -> Case:
    return (_t_value(draw, line), math.pow(10.0, -draw(st.floats(2.0, 7.0))))


def _sides(line: Line) -> Iterator[Case]:
    yield (0.0,)
    yield (1.0,)


def _points(line: Line) -> Iterator[Case]:
    for t in line.probes():
        yield (t,)


def _pairs(line: Line) -> Iterator[Case]:
    ts = line.probes()
    for i, a in enumerate(ts):
        for b in ts[i + 1 :]:
            yield (a, b)


def _steps(line: Line) -> Iterator[Case]:
    for h in SMOOTH_STEPS:
        for t in line.probes():
            yield (t, h)
        for kink in line.kinks:
            yield (kink - h / 2, h)


@dataclass(frozen=True)
class Check:
    """One card property as a search for a counterexample on the loss's domain.

    Calling it with a spec answers whether the property holds for that loss's kernel (default params).
    """

    name: str
    violation: Callable[[Evaluator, Line, Case], str | None]
    canonical: Callable[[Line], Iterator[Case]]
    random: Callable[[st.DrawFn, Line], Case]

    @property
    def definition(self) -> str:
        return " ".join((self.violation.__doc__ or "").split())

    def counterexample(self, evaluator: Evaluator, domain: Domain, search: settings = SEARCH) -> str | None:
        """A description of a counterexample, or None when the property held on every probe."""
        for line in domain.canonical_lines():
            for case in self.canonical(line):
                found = self.violation(evaluator, line, case)
                if found is not None:
                    return found

        @st.composite
        def draw_case(draw: st.DrawFn) -> tuple[Line, Case]:
            line = draw(domain.lines())
            return line, self.random(draw, line)

        def violates(example: tuple[Line, Case]) -> bool:
            return self.violation(evaluator, *example) is not None

        try:
            line, case = find(draw_case(), violates, settings=search)
        except NoSuchExample:
            return None
        return self.violation(evaluator, line, case)

    def __call__(self, spec: LossSpec) -> bool:
        return self.counterexample(kernel_evaluator(spec), domain_of(spec)) is None


PROPERTY_CHECKS: dict[str, Check] = {
    "robust_to_outliers": Check("robust_to_outliers", _robust_violation, _sides, _side_case),
    "smooth_gradient": Check("smooth_gradient", _smooth_violation, _steps, _step_case),
    "convex": Check("convex", _convex_violation, _pairs, _pair_case),
    "differentiable": Check("differentiable", _differentiable_violation, _points, _point_case),
    "bounded_below": Check("bounded_below", _bounded_below_violation, _sides, _side_case),
}
"""Each boolean field of ``kernels.spec.Properties`` -> its checker ``(spec) -> holds``."""


# --- the per-loss input domains --------------------------------------------------------------------

LOSS_DOMAINS: dict[str, Domain] = {
    "mse": Real(),
    "mae": Real(),
    "huber": Real(kinks=(0.0, -HuberParams().delta, HuberParams().delta)),
    "log_cosh": Real(),
    "binary_cross_entropy": BinaryProbability(eps=BinaryCrossEntropyParams().eps),
    "cross_entropy": Simplex(eps=CrossEntropyParams().eps),
    "sparse_cross_entropy": Simplex(eps=SparseCrossEntropyParams().eps, labels=True),
    "focal": BinaryProbability(eps=FocalParams().eps),
    "dice": ChannelMasks(),
    "iou": ChannelMasks(),
    "tversky": ChannelMasks(),
    "ssim": Images(),
}
"""Each registered loss (canonical name) -> the inputs its default form takes, as lines."""


def domain_of(spec: LossSpec) -> Domain:
    domain = LOSS_DOMAINS.get(spec.name)
    if domain is None:
        raise KeyError(
            f"loss {spec.name!r} has no entry in tests/kernels/properties.py LOSS_DOMAINS: add the domain of its "
            "default form so that its card's properties are checked"
        )
    return domain
