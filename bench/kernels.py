"""Section 2: kernel throughput in process, onnxruntime against numpy (and PyTorch eager).

Every registered loss, float32, default params, at each size, forward (loss +
per_sample) and forward + gradients, run exactly as the service runs it
(``Runtime.kernel`` + ``Runtime.run``). Inputs are ``(N, 10)``: ten elements per sample
for element-wise losses, ten classes for class-wise ones. A loss around a configured model
(``perceptual``) has rows of its own at its own size (bench.perceptual).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from bench import perceptual
from bench.baselines import NUMPY, Outputs, evaluate
from bench.layouts import defaults
from bench.machine import Interference
from bench.stats import Spread, time_calls
from bench.table import number, ratio, render, spread
from kernels import REGISTRY
from kernels.graph import graph_shape
from kernels.runtime import Runtime
from kernels.spec import Input, LossSpec

WIDTH = 10
"""Elements per sample (element-wise losses) or classes (class-wise ones)."""
BATCH_SYMBOLS = ("N", "M")


LARGE_LOSSES = ("focal", "cross_entropy", "mse")
"""The losses run above 1M elements unless ``--losses`` names others: those torch.compile's fused
pass covers (bench.fused). Every loss at 10M would take minutes each and, for the pairwise ones
(nt_xent, triplet_hard: N x N similarities), more memory than the machine has."""


@dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...]
    repeats: dict[int, int]
    threads: int
    torch: bool
    losses: tuple[str, ...] = ()
    """Only these losses (all when empty)."""
    fused: bool = False
    """Also time torch.compile's fused single pass where bench.fused has the loss."""


@dataclass(frozen=True)
class Row:
    loss: str
    elements: int
    gradients: bool
    ort: Spread | None
    numpy: Spread | None
    torch: Spread | None
    numpy_diff: float | None
    torch_diff: float | None
    note: str = ""
    fused: Spread | None = None
    """torch.compile's fused single pass (forward only, a few losses)."""
    noise: float = 0.0
    """Cores other processes kept busy while this row was measured."""

    def json(self) -> dict[str, Any]:
        def entry(s: Spread | None) -> dict[str, Any] | None:
            if s is None:
                return None
            return {"seconds": s.json(), "elements_per_second": self.elements / s.median}

        return {
            "loss": self.loss,
            "elements": self.elements,
            "gradients": self.gradients,
            "ort": entry(self.ort),
            "numpy": entry(self.numpy),
            "torch": entry(self.torch),
            "fused": entry(self.fused),
            "ort_over_torch": self.torch.median / self.ort.median if self.ort and self.torch else None,
            "ort_over_fused": self.fused.median / self.ort.median if self.ort and self.fused else None,
            "ort_over_numpy": self.numpy.median / self.ort.median if self.ort and self.numpy else None,
            "torch_over_numpy": self.numpy.median / self.torch.median if self.torch and self.numpy else None,
            "max_rel_diff_vs_ort": {"numpy": self.numpy_diff, "torch": self.torch_diff},
            "note": self.note,
            "other_processes_cores": self.noise,
        }


def class_wise(spec: LossSpec) -> bool:
    """True when some input has a named axis after "..." (a class axis): "..." is then empty."""
    return any("..." in i.shape and i.shape[-1] != "..." for i in spec.inputs)


def natural_shape(spec: LossSpec, spec_input: Input, rows: int) -> tuple[int, ...]:
    shape: list[int] = []
    for dim in spec_input.shape:
        if dim == "...":
            shape += [] if class_wise(spec) else [WIDTH]
        else:
            shape.append(rows if dim in BATCH_SYMBOLS else int(dim) if dim.isdigit() else WIDTH)
    return tuple(shape)


def make_inputs(spec: LossSpec, elements: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random inputs by kind: reals ~ N(0, 1), probabilities in (0.01, 0.99), 0/1 or
    one-hot targets, labels in [0, 10), counts in [1, 10], else one of the allowed values."""
    from_logits = bool(getattr(spec.params(), "from_logits", False))
    rows = elements // WIDTH
    arrays: dict[str, np.ndarray] = {}
    for spec_input in spec.inputs:
        shape = natural_shape(spec, spec_input, rows)
        kind = spec_input.kind
        if spec_input.allowed:
            values = rng.choice(np.asarray(spec_input.allowed), shape)
            arrays[spec_input.name] = values.astype(np.int64 if spec_input.integer else np.float32)
        elif kind == "label":
            arrays[spec_input.name] = rng.integers(0, WIDTH, shape, dtype=np.int64)
        elif kind == "count":
            arrays[spec_input.name] = rng.integers(1, WIDTH + 1, shape, dtype=np.int64)
        elif kind == "real" or (kind == "score" and from_logits):
            arrays[spec_input.name] = rng.standard_normal(shape, dtype=np.float32)
        elif kind == "score":
            arrays[spec_input.name] = rng.random(shape, dtype=np.float32) * np.float32(0.98) + np.float32(0.01)
        elif spec_input.shape[-1] != "...":  # a distribution over classes: one-hot
            labels = rng.integers(0, shape[-1], shape[:-1])
            arrays[spec_input.name] = (labels[..., None] == np.arange(shape[-1])).astype(np.float32)
        else:
            arrays[spec_input.name] = rng.integers(0, 2, shape).astype(np.float32)
    return arrays


def relative_diff(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected| / max |expected|."""
    scale = float(np.max(np.abs(expected))) or 1.0
    return float(np.max(np.abs(actual.astype(np.float64) - expected))) / scale


def compare(baseline: Outputs, reference: Outputs) -> float:
    pairs = [(baseline.loss, reference.loss), (baseline.per_sample, reference.per_sample)]
    if baseline.gradient is not None and reference.gradient is not None:
        pairs.append((baseline.gradient, reference.gradient))
    return max(relative_diff(a, b) for a, b in pairs)


def load_torch(wanted: bool) -> ModuleType | None:
    if not wanted:
        return None
    try:
        from bench import torch_eager
    except ImportError:
        return None
    return torch_eager


def load_fused(wanted: bool) -> ModuleType | None:
    if not wanted:
        return None
    from bench import fused

    return fused


def memory_floor(elements: int, repeats: int) -> Spread:
    """One copy of a float32 array of that size."""
    source = np.ones(elements, dtype=np.float32)
    target = np.empty_like(source)
    return time_calls(lambda: np.copyto(target, source), repeats)


class Bench:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime = Runtime(REGISTRY, provider="cpu", intra_op_threads=settings.threads)
        self.torch = load_torch(settings.torch)
        self.fused = load_fused(settings.fused and self.torch is not None)
        if self.torch is not None:
            self.torch.set_threads(settings.threads)

    def case(self, spec: LossSpec, arrays: dict[str, np.ndarray], gradients: bool, repeats: int) -> Row:
        elements = arrays["predictions"].size if "predictions" in arrays else next(iter(arrays.values())).size
        params = spec.params()
        graph = {s.name: arrays[s.name].reshape(graph_shape(s, arrays[s.name].shape)) for s in spec.inputs}
        rows = next(iter(arrays.values())).shape[0]
        weights = np.ones(rows, dtype=np.float32)
        kernel = self.runtime.kernel(spec, params, "float32", gradients)
        names = ["loss", "per_sample", *(f"grad_{n}" for n in spec.differentiable[:1] if gradients)]

        def ort() -> Outputs:
            loss, per_sample, *grads = self.runtime.run(kernel, params, graph, weights, True, names)
            gradient = grads[0].reshape(arrays[spec.differentiable[0]].shape) if grads else None
            return Outputs(loss, per_sample, gradient)

        reference = ort()
        ort_time = time_calls(ort, repeats)
        notes: list[str] = []
        numpy_time = numpy_diff = None
        if spec.name in NUMPY:
            baseline = NUMPY[spec.name]
            numpy_time, numpy_diff = self._baseline(
                lambda: evaluate(baseline, arrays, params, weights, gradients), reference, repeats, notes, "numpy"
            )
        torch_time = torch_diff = None
        if self.torch is not None and spec.name in self.torch.TORCH:
            torch_loss, evaluate_torch = self.torch.TORCH[spec.name], self.torch.evaluate
            x, w = self.torch.tensors(arrays), self.torch.tensors({"w": weights})["w"]
            torch_time, torch_diff = self._baseline(
                lambda: evaluate_torch(torch_loss, x, params, w, gradients), reference, repeats, notes, "torch"
            )
            time.sleep(0.05)  # let torch's OpenMP workers stop spinning before the next ORT run
        fused_time = None
        if self.fused is not None and not gradients and spec.name in self.fused.SOURCES:
            fused, name = self.fused.evaluate, spec.name
            fused_time, fused_diff = self._baseline(lambda: fused(name, arrays), reference, repeats, notes, "fused")
            if fused_diff is not None:
                notes.append(f"fused max rel diff {fused_diff:.1e}")
            time.sleep(0.05)
        note = "; ".join(notes)
        row = Row(spec.name, elements, gradients, ort_time, numpy_time, torch_time, numpy_diff, torch_diff, note)
        return dataclasses.replace(row, fused=fused_time)

    @staticmethod
    def _baseline(
        fn: Callable[[], Outputs], reference: Outputs, repeats: int, notes: list[str], name: str
    ) -> tuple[Spread | None, float | None]:
        try:
            diff = compare(fn(), reference)
        except NotImplementedError as exc:
            notes.append(f"{name}: {exc}")
            return None, None
        return time_calls(fn, repeats, warmup=0), diff

    def run(self, log: Callable[[str], None]) -> tuple[list[Row], dict[int, Spread]]:
        rows: list[Row] = []
        floors: dict[int, Spread] = {}
        rng = np.random.default_rng(0)
        for size in self.settings.sizes:
            repeats = self.settings.repeats[size]
            floors[size] = memory_floor(size, repeats)
            for spec in REGISTRY:
                if self.settings.losses and spec.name not in self.settings.losses:
                    continue
                if spec.configured:  # nothing configured here: rows of its own below
                    continue
                if not defaults(spec):  # weighted_cross_entropy: its class weights are the request's
                    continue
                if size > 1_000_000 and not self.settings.losses and spec.name not in LARGE_LOSSES:
                    continue
                log(f"  {spec.name} at {size:,} elements")
                arrays: dict[str, np.ndarray] = {}  # the last loss's inputs freed before these are made
                try:
                    arrays = make_inputs(spec, size, rng)
                    for gradients in (False, True):
                        if gradients and not spec.differentiable:
                            continue
                        interference = Interference.start()
                        row = self.case(spec, arrays, gradients, repeats)
                        rows.append(dataclasses.replace(row, noise=interference.other_cores()))
                except Exception as exc:  # a loss this harness cannot feed yet: reported, not fatal
                    rows.append(Row(spec.name, size, False, None, None, None, None, None, f"error: {exc!r}"))
                del arrays
        if not self.settings.losses or perceptual.LOSS in self.settings.losses:
            log(f"  perceptual at {perceptual.SHAPE}")
            repeats = self.settings.repeats[self.settings.sizes[0]]
            for gradients, (time_taken, _) in perceptual.measure(self.settings.threads, repeats).items():
                elements = int(np.prod(perceptual.SHAPE))
                note = f"{'x'.join(map(str, perceptual.SHAPE))} images, {perceptual.EXTRACTOR}"
                rows.append(Row("perceptual", elements, gradients, time_taken, None, None, None, None, note))
        return rows, floors


def throughput(elements: int, s: Spread | None) -> str:
    return "n/a" if s is None else number(elements / s.median / 1e6)


def report(rows: list[Row], floors: dict[int, Spread], settings: Settings, torch_version: str | None) -> str:
    headers = [
        "loss",
        "elements",
        "grad",
        "ORT ms (min-max)",
        "ORT Melem/s",
        "vs numpy",
        "numpy ms (min-max)",
        "numpy Melem/s",
        "torch ms (min-max)",
        "torch Melem/s",
        "vs numpy",
        "ORT vs torch",
        "fused ms",
        "ORT vs fused",
        "max rel diff",
        "other procs",
    ]
    table = []
    for r in rows:
        diffs = [d for d in (r.numpy_diff, r.torch_diff) if d is not None]
        table.append(
            [
                r.loss,
                f"{r.elements / 1e6:g}M",
                "yes" if r.gradients else "no",
                "n/a" if r.ort is None else spread(r.ort, 1e3),
                throughput(r.elements, r.ort),
                ratio(r.numpy.median, r.ort.median) if r.numpy and r.ort else "n/a",
                "n/a" if r.numpy is None else spread(r.numpy, 1e3),
                throughput(r.elements, r.numpy),
                "n/a" if r.torch is None else spread(r.torch, 1e3),
                throughput(r.elements, r.torch),
                ratio(r.numpy.median, r.torch.median) if r.numpy and r.torch else "n/a",
                ratio(r.torch.median, r.ort.median) if r.torch and r.ort else "n/a",
                "n/a" if r.fused is None else spread(r.fused, 1e3),
                ratio(r.fused.median, r.ort.median) if r.fused and r.ort else "n/a",
                f"{max(diffs):.1e}" if diffs else "n/a",
                f"{r.noise:.2f}",
            ]
        )
    torch_text = f"PyTorch {torch_version} eager, autograd for gradients" if torch_version else "PyTorch not installed"
    floor_text = ", ".join(f"{n / 1e6:g}M: {f.median * 1e3:.2f} ms" for n, f in floors.items())
    lines = [
        "Kernels in process: float32, default params, (N, 10), outputs loss + per_sample (+ grad_predictions); "
        "median (min-max) of "
        + ", ".join(f"{settings.repeats[n]} runs at {n / 1e6:g}M" for n in settings.sizes)
        + ("" if settings.losses or max(settings.sizes) <= 1_000_000 else f"; above 1M: {', '.join(LARGE_LOSSES)}"),
        f"ORT intra-op threads {settings.threads}; torch.set_num_threads({settings.threads}); numpy single-threaded; "
        f"{torch_text}",
        f"'vs numpy' = numpy time / time (throughput ratio to the numpy floor); memory floor, one float32 copy: "
        f"{floor_text}",
        "'ORT vs torch' / 'ORT vs fused' = their time / ORT time (>= 1: ORT is faster); fused = torch.compile "
        "single pass, forward only (--fused); "
        "'max rel diff' = largest max|x - ORT| / max|ORT| over loss, per_sample, gradient of numpy and torch; "
        "'other procs' = cores other processes took meanwhile (2-thread timings, torch's most, suffer from it)",
        "",
        render(headers, table, left=3),
    ]
    notes = [f"{r.loss} {r.elements / 1e6:g}M: {r.note}" for r in rows if r.note]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)
