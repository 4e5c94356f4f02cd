"""Input domains of the metric-learning losses (kernels/metric_learning.py) for the card property checks of
``tests/kernels/properties.py``: cosine logits in a box, and whole labelled batches of embeddings."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from hypothesis import strategies as st

from kernels.spec import LossSpec
from tests.kernels.harness import evaluate
from tests.kernels.properties import (
    CENTRAL_MARGIN,
    REAL_CENTRAL,
    Array,
    Domain,
    Evaluator,
    Floats,
    Line,
    Target,
    _interval,
)


@dataclass(frozen=True)
class Cosines(Domain):
    """Cosine logits (shape ``(C,)``, every component in ``[-1, 1]``) with a label target: along the true
    class's cosine and another class's (the others fixed; also against a rival close to the box's end), and
    along random chords through the box. ``kinks``
    are the true class's cosines where the kernel switches formula (ArcFace's continuation past theta + m = pi,
    its clip near 1); the central region keeps every component within ``[-0.95, 0.95]``."""

    kinks: tuple[float, ...] = ()
    classes: int = 3

    def line(self, label: int, origin: Floats, direction: Floats, kinks: tuple[float, ...] = ()) -> Line:
        lo, hi = _interval(origin, direction, -1.0, 1.0)
        edge = 1.0 - CENTRAL_MARGIN
        return Line(
            target=np.array(label, dtype=np.int64),
            origin=origin,
            direction=direction,
            lo=lo,
            hi=hi,
            central=_interval(origin, direction, -edge, edge),
            kinks=kinks,
        )

    def class_line(self, label: int, k: int, rest: Floats) -> Line:
        """Class ``k``'s cosine ``t`` in ``[-1, 1]``, the others at ``rest``; on the true class's line the
        kinks are at ``t`` = the kinks."""
        origin = np.insert(rest, k, 0.0)
        return self.line(label, origin, np.eye(self.classes)[k], self.kinks if k == label else ())

    def canonical_lines(self) -> tuple[Line, ...]:
        rest = np.array([0.2, -0.3])
        chord = np.array([1.0, -1.0, 0.5]) / math.sqrt(2.25)
        return (
            self.class_line(0, 0, rest),
            self.class_line(0, 1, rest),
            self.line(1, np.array([0.1, 0.4, -0.2]), chord),
            # a strong rival (0.7): the true class competes with it only beyond the central region (CosFace's
            # margin 0.35: at t = 1.05), so the curvature grows by e^(s 0.05) = 25x from the central region's
            # end to the box's (s = 64); random lines reach that band only by chance
            self.class_line(0, 0, np.array([0.7, -0.3])),
        )

    def lines(self) -> st.SearchStrategy[Line]:
        c = self.classes

        @st.composite
        def draw_line(draw: st.DrawFn) -> Line:
            label = draw(st.integers(0, c - 1))
            if draw(st.booleans()):
                rest = np.array(draw(st.lists(st.floats(-0.9, 0.9), min_size=c - 1, max_size=c - 1)))
                return self.class_line(label, draw(st.integers(0, c - 1)), rest)
            origin = np.array(draw(st.lists(st.floats(-0.9, 0.9), min_size=c, max_size=c)))
            v = np.array(draw(st.lists(st.floats(-1.0, 1.0), min_size=c, max_size=c)))
            norm = float(np.linalg.norm(v))
            return self.line(label, origin, v / norm if norm > 1e-3 else np.eye(c)[0])

        return draw_line()

    def mismatch(self, spec: LossSpec) -> str | None:
        predictions, targets = spec.inputs[0], spec.inputs[1]
        if predictions.kind != "cosine" or predictions.shape != ("N", "C"):
            return f"predictions are {predictions.kind!r} of shape {predictions.shape}, not cosine logits"
        return None if targets.kind == "label" else f"targets are {targets.kind!r}, not labels"


FLOOR = 0.25
"""Embeddings stay at least this far from the zero vector, where a cosine is undefined (the kernels' 1e-12
clamp of the norm, torch's, only keeps it finite)."""


def _perpendicular(unit: Floats) -> Floats:
    """A unit vector perpendicular to ``unit`` (Gram-Schmidt on the axis least along it)."""
    axis = np.eye(len(unit))[int(np.argmin(np.abs(unit)))]
    v: Floats = axis - (axis @ unit) * unit
    return v / np.linalg.norm(v)


@dataclass(frozen=True)
class EmbeddingBatch(Domain):
    """Batch-level losses over a whole batch of embeddings: a point is every embedding of the batch (each
    differentiable input, ``rows`` embeddings of ``dim`` components, concatenated), the labels (if the loss
    has them) are fixed, and the loss is the batch's one value. Properties are about the loss as a function of
    all the embeddings jointly, away from zero vectors (each embedding's path passes the origin at twice the
    floor or more). Canonical lines: from a fixed batch, one embedding moving along an axis, one moving
    towards another embedding, and every embedding moving together; random lines start anywhere (components
    in [-2, 2]) in a random direction."""

    inputs: tuple[str, ...]
    labels: tuple[int, ...] | None = (0, 0, 1, 1, 2)
    dim: int = 2
    floor: float = FLOOR
    """The least norm of an embedding (0 for distance-based losses, defined at the zero vector too)."""
    kink: Literal["mining", "cosine"] | None = None
    """A canonical line through a known kink (default labels and dim): ``mining`` moves embedding 0 along x
    between two negatives at (-2, 0) and (2, 0), its positive at (0, 1.5), so its nearest (and semi-hard)
    negative switches at t = 0; ``cosine`` moves embedding 0 = (t, 1) past the negative (1, 0), their cosine
    crossing ``cosine`` (circle's -m) at t = cosine / sqrt(1 - cosine^2)."""
    cosine: float = 0.0

    @property
    def rows(self) -> int:
        return len(self.labels) if self.labels is not None else 3

    @property
    def size(self) -> int:
        return len(self.inputs) * self.rows * self.dim

    def fixed(self) -> dict[str, Array]:
        return {} if self.labels is None else {"labels": np.array(self.labels, dtype=np.int64)}

    def embeddings(self, point: Floats) -> Floats:
        parts: Floats = point.reshape(len(self.inputs) * self.rows, self.dim)
        return parts

    def line(self, origin: Floats, direction: Floats, kinks: tuple[float, ...] = ()) -> Line:
        """The line through ``origin``, each embedding first moved (across its own path) so that its path
        passes the zero vector no closer than twice the floor: the whole line is in the domain."""
        o = self.embeddings(origin).copy()
        v = self.embeddings(direction)
        for i, (x, w) in enumerate(zip(o, v, strict=True)):
            if float(w @ w) == 0.0:
                if np.linalg.norm(x) < 2 * self.floor:
                    o[i, 0] += 3 * self.floor
                continue
            unit = w / np.linalg.norm(w)
            across = x - (x @ unit) * unit  # the path's closest point to the zero vector
            gap = float(np.linalg.norm(across))
            if gap < 2 * self.floor:
                away = across / gap if gap > 0 else _perpendicular(unit)
                o[i] += (3 * self.floor - gap) * away
        return Line(
            target=self.fixed(),
            origin=o.ravel(),
            direction=direction,
            lo=-math.inf,
            hi=math.inf,
            central=(-REAL_CENTRAL, REAL_CENTRAL),
            kinks=kinks,
            extremes=(-1e12, 1e12),
        )

    def base(self) -> Floats:
        rng = np.random.default_rng(5)
        base: Floats = rng.normal(size=self.size)
        return base

    def canonical_lines(self) -> tuple[Line, ...]:
        base = self.line(self.base(), np.eye(self.size)[0]).origin
        axis = np.eye(self.size)[0]
        towards = np.zeros(self.size)
        towards[: self.dim] = base[self.dim : 2 * self.dim] - base[: self.dim]
        towards /= np.linalg.norm(towards)
        together = np.ones(self.size) / math.sqrt(self.size)
        lines = [self.line(base, axis), self.line(base, towards), self.line(base, together)]
        if self.kink == "mining":
            lines.append(self.line(np.array([0.0, 0.0, 0.0, 1.5, -2.0, 0.0, 2.0, 0.0, 0.0, -10.0]), axis, (0.0,)))
        elif self.kink == "cosine":
            crossing = self.cosine / math.sqrt(1.0 - self.cosine**2)
            origin = np.array([0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, -1.0, -0.2, -1.0])
            lines.append(self.line(origin, axis, (crossing,)))
        return tuple(lines)

    def lines(self) -> st.SearchStrategy[Line]:
        @st.composite
        def draw_line(draw: st.DrawFn) -> Line:
            def vector(low: float, high: float) -> Floats:
                return np.array(draw(st.lists(st.floats(low, high), min_size=self.size, max_size=self.size)))

            direction = vector(-1.0, 1.0)
            # a component of 1e-12 would turn an embedding around only at t = 1e12, beyond the ladder: the
            # far end would be a different batch, not the limit the loss approaches along the line
            direction[np.abs(direction) < 1e-3] = 0.0
            norm = float(np.linalg.norm(direction))
            if norm < 1e-3:
                direction, norm = np.eye(self.size)[0], 1.0
            return self.line(vector(-2.0, 2.0), direction / norm)

        return draw_line()

    def mismatch(self, spec: LossSpec) -> str | None:
        if not spec.batch_level:
            return "the loss is not batch-level"
        if spec.differentiable != self.inputs:
            return f"differentiable inputs are {spec.differentiable}, not {self.inputs}"
        fixed = [i.name for i in spec.inputs if not i.differentiable]
        if fixed != list(self.fixed()):
            return f"fixed inputs are {fixed}, the domain fixes {list(self.fixed())}"
        return None

    def evaluator(self, spec: LossSpec) -> Evaluator:
        shape = (len(self.inputs), self.rows, self.dim)

        def run(points: Floats, targets: Target) -> tuple[Floats, Floats]:
            assert isinstance(targets, dict)
            values, grads = [], []
            for k, point in enumerate(points):  # each point is its own batch
                parts = point.reshape(shape)
                inputs: dict[str, Array] = {name: parts[i] for i, name in enumerate(self.inputs)}
                inputs.update({name: value[k] for name, value in targets.items()})
                result = evaluate(spec.name, inputs, reduction="none")
                values.append(float(result.per_sample[0]))
                grads.append(np.concatenate([result.gradients[name].ravel() for name in self.inputs]))
            return np.array(values), np.array(grads)

        return run
