"""Section: a loss's cost by layout at a fixed element count, every loss.

The same million elements laid out as the requests users send: one value per sample
``(N,)``, ``(N, R)`` for small and large ``R``, ``(N, C)`` with 2, 10 or 1000 classes,
images ``(N, C, H, W)``. A loss's time should depend on its element count alone: each
row gives the worst layout over the best, forward and with gradients, in process
(``Runtime.kernel`` + ``Runtime.compute``, as the service runs them).

``python -m bench.layouts [--elements 1000000] [--losses focal,mse]``
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from bench.stats import Spread, time_calls
from bench.table import number, render
from kernels import REGISTRY
from kernels.runtime import Runtime
from kernels.spec import Input, LossSpec

TARGET = 1.25
"""The worst layout's time over the best's, at most."""
Binding = dict[str, Any]
"""A size per shape symbol; "..." binds a tuple of axes."""
SYMBOLS = {"N", "M", "C", "D", "K", "..."}


def layouts(spec: LossSpec, elements: int) -> dict[str, Binding]:
    """The layouts a loss's first input can take at ``elements`` elements, by name. Losses
    with other symbols (sequence lengths, image sides), one value per batch or without default
    params are left out."""
    declared = spec.inputs[0].shape
    if spec.batch_level or not {d for i in spec.inputs for d in i.shape} <= SYMBOLS or not defaults(spec):
        return {}
    found: dict[str, Binding] = {}
    if declared == ("N", "..."):
        for axes in [(), (2,), (10,), (1000,), (4, 16, 16)]:
            rows = elements // math.prod(axes)
            found[str((rows, *axes))] = {"N": rows, "M": rows, "...": axes}
    elif declared == ("N", "...", "C"):  # classes last: (N, C), images (N, H, W, C)
        for width in (2, 10, 1000):
            for axes in [()] + ([(16, 16)] if width <= 10 else []):
                rows = elements // (width * math.prod(axes))
                found[str((rows, *axes, width))] = {"N": rows, "C": width, "...": axes}
    elif declared[:2] in (("N", "C"), ("N", "D"), ("N", "K")):
        for width in (2, 10, 1000):
            for axes in [()] + ([(16, 16)] if len(declared) == 3 and width <= 10 else []):
                rows = elements // (width * math.prod(axes))
                symbol = declared[1]
                found[str((rows, width, *axes))] = {"N": rows, "M": rows, symbol: width, "...": axes}
    return found


def defaults(spec: LossSpec) -> bool:
    """Whether the loss runs on default params (weighted_cross_entropy needs its class weights)."""
    try:
        spec.params()
    except ValidationError:
        return False
    return True


def shape_of(spec_input: Input, binding: Binding) -> tuple[int, ...]:
    shape: list[int] = []
    for dim in spec_input.shape:
        shape += list(binding["..."]) if dim == "..." else [binding[dim]]
    return tuple(shape)


def make_inputs(spec: LossSpec, binding: Binding, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Valid random inputs by kind (as ``bench.kernels.make_inputs``, at any layout)."""
    from_logits = bool(getattr(spec.params(), "from_logits", False))
    classes = int(binding.get("C", 2))
    arrays: dict[str, np.ndarray] = {}
    for spec_input in spec.inputs:
        shape = shape_of(spec_input, binding)
        kind = spec_input.kind
        if spec_input.allowed:
            values = rng.choice(np.asarray(spec_input.allowed), shape)
            arrays[spec_input.name] = values.astype(np.int64 if spec_input.integer else np.float32)
        elif kind == "label":
            arrays[spec_input.name] = rng.integers(0, classes, shape, dtype=np.int64)
        elif kind == "count":
            arrays[spec_input.name] = rng.integers(1, 11, shape, dtype=np.int64)
        elif kind == "real" or (kind == "score" and from_logits):
            arrays[spec_input.name] = rng.standard_normal(shape, dtype=np.float32)
        elif kind == "score":
            arrays[spec_input.name] = rng.random(shape, dtype=np.float32) * np.float32(0.98) + np.float32(0.01)
        elif spec_input.normalized or (kind == "probability" and "C" in spec_input.shape):
            # A distribution over the class axis (else the last): one-hot along it, counted from the end after "...".
            at = spec_input.shape.index("C") if "C" in spec_input.shape else len(spec_input.shape) - 1
            axis = (at if "..." not in spec_input.shape[:at] else at - len(spec_input.shape)) % len(shape)
            labels = rng.integers(0, shape[axis], shape[:axis] + shape[axis + 1 :])
            one_hot = np.moveaxis(np.eye(shape[axis], dtype=np.float32)[labels], -1, axis)
            arrays[spec_input.name] = np.ascontiguousarray(one_hot)
        elif kind == "nonnegative":
            arrays[spec_input.name] = rng.random(shape, dtype=np.float32) * np.float32(3) + np.float32(0.1)
        else:
            arrays[spec_input.name] = rng.integers(0, 2, shape).astype(np.float32)
    return arrays


@dataclass(frozen=True)
class Row:
    loss: str
    gradients: bool
    times: dict[str, Spread]

    @property
    def best(self) -> tuple[str, Spread]:
        return min(self.times.items(), key=lambda kv: kv[1].median)

    @property
    def worst(self) -> tuple[str, Spread]:
        return max(self.times.items(), key=lambda kv: kv[1].median)

    @property
    def ratio(self) -> float:
        return self.worst[1].median / self.best[1].median

    @property
    def spread(self) -> tuple[float, float]:
        """The ratio's range: worst layout's min over best's max, and max over min."""
        return self.worst[1].low / self.best[1].high, self.worst[1].high / self.best[1].low

    def json(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "gradients": self.gradients,
            "seconds": {k: v.json() for k, v in self.times.items()},
            "worst_over_best": self.ratio,
            "worst_over_best_range": self.spread,
        }


def measure(runtime: Runtime, spec: LossSpec, elements: int, repeats: int, rng: np.random.Generator) -> list[Row]:
    rows = []
    bindings = layouts(spec, elements)
    if len(bindings) < 2:
        return []
    inputs = {name: make_inputs(spec, binding, rng) for name, binding in bindings.items()}
    params = spec.params()
    for gradients in (False, True) if spec.differentiable else (False,):
        kernel = runtime.kernel(spec, params, "float32", gradients)
        times = {}
        for name, arrays in inputs.items():
            weights = np.ones(arrays[spec.inputs[0].name].shape[0], np.float32)
            run = functools.partial(runtime.compute, kernel, params, arrays, weights, True)
            times[name] = time_calls(run, repeats)
        rows.append(Row(spec.name, gradients, times))
    return rows


def report(rows: list[Row], elements: int) -> str:
    table = []
    for row in rows:
        (worst, w), (best, b) = row.worst, row.best
        low, high = row.spread
        table.append(
            [
                row.loss,
                "grad" if row.gradients else "fwd",
                f"{best} {number(b.median * 1e3)}",
                f"{worst} {number(w.median * 1e3)}",
                f"{row.ratio:.2f} ({low:.2f}-{high:.2f})",
                "ok" if row.ratio <= TARGET else "MISS",
            ]
        )
    misses = sum(r.ratio > TARGET for r in rows)
    head = f"Layouts at {elements:,} elements, float32, ms (median), worst/best with its min-max range"
    foot = f"{len(rows) - misses} of {len(rows)} within {TARGET}x; {misses} miss"
    header = ["loss", "", "best layout ms", "worst layout ms", "worst/best", f"<= {TARGET}"]
    return "\n".join([head, render(header, table), foot])


@dataclass(frozen=True)
class Settings:
    elements: int = 1_000_000
    repeats: int = 7
    threads: int = 2
    losses: tuple[str, ...] = ()
    """Only these (every loss with several layouts when empty)."""


def run(settings: Settings, log: Callable[[str], None] = print) -> list[Row]:
    runtime = Runtime(REGISTRY, provider="cpu", intra_op_threads=settings.threads)
    rng = np.random.default_rng(0)
    rows: list[Row] = []
    for spec in REGISTRY:
        if (not settings.losses or spec.name in settings.losses) and not spec.configured:
            found = measure(runtime, spec, settings.elements, settings.repeats, rng)
            if found:
                log(f"  layouts {spec.name}: " + ", ".join(f"{r.ratio:.2f}" for r in found))
            rows += found
    return rows


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.layouts")
    parser.add_argument("--elements", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--losses", default="", help="comma-separated (default: every loss with several layouts)")
    args = parser.parse_args(argv)
    wanted = tuple(filter(None, args.losses.split(",")))
    rows = run(Settings(args.elements, args.repeats, args.threads, wanted))
    print(report(rows, args.elements))


if __name__ == "__main__":
    main(sys.argv[1:])
