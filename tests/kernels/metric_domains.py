"""Input domains of the metric-learning losses (kernels/metric_learning.py) for the card property checks of
``tests/kernels/properties.py``: cosine logits in a box, and whole labelled batches of embeddings."""

from __future__ import annotations

import math
from dataclasses import dataclass

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
    class's cosine and another class's (the others fixed), and along random chords through the box. ``kinks``
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
        if predictions.kind != "real" or predictions.shape != ("N", "C"):
            return f"predictions are {predictions.kind!r} of shape {predictions.shape}, not cosine logits"
        return None if targets.kind == "label" else f"targets are {targets.kind!r}, not labels"


@dataclass(frozen=True)
class EmbeddingBatch(Domain):
    """Batch-level losses over a whole batch of embeddings: a point is every embedding of the batch (each
    differentiable input, ``rows`` embeddings of ``dim`` components, concatenated), the labels (if the loss
    has them) are fixed, and the loss is the batch's one value. Properties are about the loss as a function of
    all the embeddings jointly. Canonical lines: from a fixed batch, one embedding moving along an axis, one
    moving towards another embedding, and every embedding moving together; random lines start anywhere
    (components in [-2, 2]) in a random direction."""

    inputs: tuple[str, ...]
    labels: tuple[int, ...] | None = (0, 0, 1, 1, 2)
    dim: int = 2

    @property
    def rows(self) -> int:
        return len(self.labels) if self.labels is not None else 3

    @property
    def size(self) -> int:
        return len(self.inputs) * self.rows * self.dim

    def fixed(self) -> dict[str, Array]:
        return {} if self.labels is None else {"labels": np.array(self.labels, dtype=np.int64)}

    def line(self, origin: Floats, direction: Floats) -> Line:
        return Line(
            target=self.fixed(),
            origin=origin,
            direction=direction,
            lo=-math.inf,
            hi=math.inf,
            central=(-REAL_CENTRAL, REAL_CENTRAL),
            extremes=(-1e12, 1e12),
        )

    def base(self) -> Floats:
        rng = np.random.default_rng(5)
        base: Floats = rng.normal(size=self.size)
        return base

    def canonical_lines(self) -> tuple[Line, ...]:
        base = self.base()
        axis = np.eye(self.size)[0]
        towards = np.zeros(self.size)
        towards[: self.dim] = base[self.dim : 2 * self.dim] - base[: self.dim]
        towards /= np.linalg.norm(towards)
        together = np.ones(self.size) / math.sqrt(self.size)
        return (self.line(base, axis), self.line(base, towards), self.line(base, together))

    def lines(self) -> st.SearchStrategy[Line]:
        @st.composite
        def draw_line(draw: st.DrawFn) -> Line:
            def vector(low: float, high: float) -> Floats:
                return np.array(draw(st.lists(st.floats(low, high), min_size=self.size, max_size=self.size)))

            direction = vector(-1.0, 1.0)
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
