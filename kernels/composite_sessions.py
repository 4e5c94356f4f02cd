"""Sessions for ad-hoc composite graphs: built on first use from kernels.composite, kept by
term structure (LRU-bounded), so a repeated composite is one onnxruntime run."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from kernels import memory
from kernels.composite import (
    TERM_LOSSES,
    TERM_PER_SAMPLE,
    TERM_WEIGHTS,
    Structure,
    Term,
    build_error,
    build_model,
    field_inputs,
    structure,
)
from kernels.feeds import NUMPY_DTYPE, Evaluation, from_graph, param_feed, to_graph
from kernels.graph import MEAN, WEIGHTS, Dtype
from kernels.spec import Input, fill_optional


@dataclass(frozen=True)
class CompositeKernel:
    """One ad-hoc composite graph's session and how to feed its term params."""

    session: ort.InferenceSession
    dtype: Dtype
    params: tuple[tuple[str, int, str, bool, bool], ...]
    """(graph input, term index, param, is integer, is a 1-D tensor)."""
    gradients: tuple[str, ...]
    """The differentiable fields, in output order."""
    layouts: tuple[Input, ...]
    """The request fields as the terms agree to lay them out (kernels.composite.field_inputs)."""


class CompositeSessions:
    """Ad-hoc composite graphs, built on first use and kept by term structure (LRU-bounded)."""

    def __init__(self, options: ort.SessionOptions, providers: list[str], size: int = 64) -> None:
        self._options, self._providers, self._size = options, providers, size
        self._cache: OrderedDict[tuple[Structure, str, bool], CompositeKernel] = OrderedDict()
        self._lock = threading.Lock()
        self.builds = 0
        """Graphs built so far (a repeated structure builds none)."""
        self.runs = 0
        """onnxruntime runs so far (one per request)."""

    def __len__(self) -> int:
        return len(self._cache)

    def kernel(self, terms: Sequence[Term], dtype: Dtype, gradients: bool) -> CompositeKernel:
        """The composite's session, built on first use; ``InvalidInput`` (field ``terms``)
        when its graph cannot be built or loaded."""
        key = (structure(terms), dtype, gradients)
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                return found
        model = build_model(terms, dtype, gradients)
        try:
            session = ort.InferenceSession(model.SerializeToString(), self._options, providers=self._providers)
        except Exception as error:  # onnxruntime's errors share no base class but Exception
            raise build_error(terms, error) from error
        params = []
        for graph_input in session.get_inputs():
            head, _, param = graph_input.name.partition("_")
            if head.startswith("t") and head[1:].isdigit() and param:
                index = int(head[1:])
                annotation = terms[index].spec.params.model_fields[param].annotation
                params.append((graph_input.name, index, param, annotation is int, len(graph_input.shape) == 1))
        gradient_fields = tuple(
            o.name.removeprefix("grad_") for o in session.get_outputs() if o.name.startswith("grad_")
        )
        kernel = CompositeKernel(session, dtype, tuple(params), gradient_fields, tuple(field_inputs(terms).values()))
        with self._lock:
            self.builds += 1
            self._cache[key] = kernel
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return kernel

    def compute(
        self,
        kernel: CompositeKernel,
        terms: Sequence[Term],
        arrays: Mapping[str, np.ndarray],
        weights: np.ndarray,
        mean: bool,
    ) -> tuple[Evaluation, np.ndarray, np.ndarray]:
        """One onnxruntime run on the fields at their natural shapes, in the graph's dtype: the
        combined result, and each term's reduced and per-sample values."""
        dtype = NUMPY_DTYPE[kernel.dtype]
        feed: dict[str, Any] = to_graph(kernel.layouts, arrays)
        for name, index, param, is_int, vector in kernel.params:
            value = param_feed(getattr(terms[index].params, param), is_int, dtype)
            feed[name] = value.reshape(-1) if vector else value
        feed[TERM_WEIGHTS] = np.array([t.weight for t in terms], dtype=dtype)
        feed[WEIGHTS] = weights
        feed[MEAN] = np.array(mean)
        with self._lock:
            self.runs += 1
        names = ["loss", "per_sample", TERM_LOSSES, TERM_PER_SAMPLE, *(f"grad_{f}" for f in kernel.gradients)]
        found = kernel.session.run(names, feed, memory.run_options(feed))
        loss, per_sample, term_losses, term_per_sample, *grads = found
        return Evaluation(loss, per_sample, from_graph(kernel.gradients, grads, arrays)), term_losses, term_per_sample

    def evaluate(
        self,
        terms: Sequence[Term],
        inputs: Mapping[str, Any],
        *,
        reduction: Literal["mean", "sum", "none"] = "mean",
        weights: Any = None,
        dtype: Dtype = "float64",
        gradients: bool = True,
    ) -> tuple[Evaluation, np.ndarray]:
        """In-process use, without the service's checks: fields at their natural shapes in; the
        combined loss, per-sample losses and gradients, and each term's own value, out."""
        kernel = self.kernel(terms, dtype, gradients)
        np_dtype = NUMPY_DTYPE[dtype]
        arrays = {
            x.name: np.asarray(inputs[x.name], np.int64 if x.integer else np_dtype)
            for x in kernel.layouts
            if x.optional is None or inputs.get(x.name) is not None
        }
        arrays = fill_optional(kernel.layouts, arrays, np_dtype)
        count = 1 if terms[0].batch_level else next(iter(arrays.values())).shape[0]
        w = np.ones(count, np_dtype) if weights is None else np.asarray(weights, np_dtype)
        result, term_losses, term_per_sample = self.compute(kernel, terms, arrays, w, reduction == "mean")
        if reduction == "none":
            return Evaluation(result.per_sample, result.per_sample, result.gradients), term_per_sample
        return result, term_losses
