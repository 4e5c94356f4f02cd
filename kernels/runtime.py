"""onnxruntime sessions for every graph, each created on first use, and the one call that runs them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime as ort

from kernels import memory
from kernels.binding import run_bound
from kernels.blocks import Blocks
from kernels.cache import GraphCache
from kernels.composite import CompositeSpec, Term
from kernels.composite_sessions import CompositeKernel, CompositeSessions
from kernels.feeds import NUMPY_DTYPE, Evaluation, from_graph, one_per_sample, param_feed, to_graph
from kernels.graph import (
    DTYPES,
    MEAN,
    ROW_WISE,
    WEIGHTS,
    GraphKey,
    build_model,
    columnable,
    graph_dims,
    graph_shape,
)
from kernels.spec import (
    NO_RESOURCES,
    Input,
    InvalidInput,
    LossSpec,
    NotConfigured,
    Params,
    Registry,
    Resources,
    Variant,
)

log = logging.getLogger("lossd.runtime")

Provider = Literal["auto", "cpu", "cuda"]
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
MANIFEST = "manifest.json"


class ProviderUnavailable(RuntimeError):
    pass


def select_providers(provider: Provider) -> list[str]:
    """The execution providers to ask for; ``cuda`` fails loudly when it cannot work."""
    available = ort.get_available_providers()
    if provider == "cpu":
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if provider == "cuda":
        raise ProviderUnavailable(
            f"LOSSD_PROVIDER=cuda, but this onnxruntime offers only {available}: install the gpu extra "
            "(pip install 'lossd[gpu]') on a machine with an NVIDIA GPU, or use LOSSD_PROVIDER=auto or cpu."
        )
    return [CPU]


class OperatorModelError(RuntimeError):
    """A model the operator configured (e.g. a feature extractor) failed on a request's
    inputs (e.g. images smaller than its kernels): the request's fault, not a bug."""


class ConfigurationError(RuntimeError):
    """A configured resource (e.g. a feature model) cannot be built into a loss graph."""


def all_keys(specs: Registry, resources: Resources = NO_RESOURCES) -> Iterator[tuple[LossSpec, GraphKey]]:
    """Every graph: each loss's variants (given what is configured) x dtype x with and
    without gradients (only without where the variant differentiates nothing) x layout
    (rows, and the column layout where the loss has one)."""
    for spec in specs:
        for variant in spec.variants_for(resources):
            for dtype in DTYPES:
                for gradients in (False, True) if spec.differentiable_for(variant, resources) else (False,):
                    for column in (False, True) if columnable(spec) else (False,):
                        yield spec, GraphKey(spec.name, variant, dtype, gradients, column)


def fingerprints(spec: LossSpec, variant: Variant, resources: Resources) -> dict[str, str]:
    """The sha256 of each configured object a variant embeds (its graph depends on them)."""
    found = {}
    for name, value in variant:
        if name in spec.configured:
            found[name] = str(resources[spec.configured[name].collection][value].sha256)
    return found


@dataclass(frozen=True)
class Kernel:
    """One graph's session and the names it takes and gives."""

    key: GraphKey
    session: ort.InferenceSession
    input_names: tuple[str, ...]
    param_names: tuple[str, ...]
    int_params: frozenset[str]
    vector_params: frozenset[str] = frozenset()
    """Params the graph takes as a 1-D tensor (a number or a per-class list, e.g. pos_weight)."""
    fixed_dims: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = ()
    """(input, ((axis, size), ...)) where the graph fixes sizes the declaration leaves free."""
    operator_model: bool = False
    """The graph embeds a model the operator configured: its failures are the inputs' fault."""
    model: bytes | None = None
    """The graph, kept where a large batch may run in row blocks (see kernels.blocks)."""
    device: str | None = None
    """Where inputs and outputs are bound ("cuda"; see kernels.binding); None: a plain run."""
    layouts: tuple[Input, ...] = ()
    """The inputs as declared, in order: their "..." axes are collapsed for the graph."""
    column: GraphKey | None = None
    """The key of the loss's column graph, which a request of one value per sample runs
    instead (kernels.graph.columnable); None where there is none, or this is it."""

    @property
    def outputs(self) -> list[str]:
        """What a run returns: the loss, per-sample losses, then each gradient."""
        differentiable = [x.name for x in self.layouts if x.differentiable] if self.key.gradients else []
        return ["loss", "per_sample", *(f"grad_{n}" for n in differentiable)]


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # A spinning thread pool burns a core per request while waiting for work.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return memory.share_arena(options)


class Runtime:
    """Every graph of every loss, as a session once first asked for."""

    def __init__(
        self,
        specs: Registry,
        provider: Provider = "auto",
        intra_op_threads: int = 0,
        model_repository: Path | None = None,
        resources: Resources = NO_RESOURCES,
        cache: GraphCache | None = None,
    ) -> None:
        """Graphs are built on first use (see ``kernels.cache``: ``cache`` keeps them across
        starts). ``resources``: what the operator configured, by collection and name (e.g.
        ``{"feature_models": kernels.features.load_feature_models(paths)}``)."""
        # onnxruntime sends usage telemetry from Linux by default; a service running users' data says no.
        ort.disable_telemetry_events()
        self.specs = specs
        self.resources = resources
        self.requested_providers = select_providers(provider)
        self._options = session_options(intra_op_threads)
        self._blocks = Blocks(intra_op_threads or os.cpu_count() or 1, lambda: session_options(1), [CPU])
        self._kernels: dict[GraphKey, Kernel] = {}
        self._building = threading.Lock()
        self._cache = cache
        self._repository = model_repository
        self._files = read_manifest(model_repository) if model_repository else None
        first: Kernel | None = None
        for spec, key in all_keys(specs, resources):
            if self._files is not None:
                repository_graph(self._files, model_repository, spec, key, resources, read=False)
            # A graph around what the operator configured is built now: a bad configuration
            # stops start-up instead of failing the first request.
            if spec.configured or first is None:
                first = self._kernels[key] = self._build(spec, key)
        self.composites = CompositeSessions(self._options, self.requested_providers)
        """Ad-hoc composite graphs, built on first use (named composites are among the kernels)."""
        assert first is not None, "a runtime serves at least one loss"
        self.providers: list[str] = first.session.get_providers()
        if provider == "cuda" and CUDA not in self.providers:
            raise ProviderUnavailable("LOSSD_PROVIDER=cuda, but onnxruntime could not start CUDA on this machine.")

    def _build(self, spec: LossSpec, key: GraphKey) -> Kernel:
        """One graph's session: from the model repository, else the cache, else built."""
        try:
            if self._files is not None:
                model_bytes = repository_graph(self._files, self._repository, spec, key, self.resources)
            elif self._cache is not None and cacheable(spec):
                model_bytes = self._cache.fetch(cache_stem(spec, key), lambda: self.model_bytes(key, spec))
            else:
                model_bytes = self.model_bytes(key, spec)
            return self._load(spec, key, model_bytes)
        except Exception as exc:
            if not spec.configured:
                raise
            raise ConfigurationError(f"cannot build the graph {key.stem} around what is configured: {exc}") from exc

    def _load(self, spec: LossSpec, key: GraphKey, model_bytes: bytes) -> Kernel:
        session = ort.InferenceSession(model_bytes, self._options, providers=self.requested_providers)
        names = tuple(i.name for i in session.get_inputs())
        param_names = tuple(n for n in names if n in spec.params.model_fields)
        int_params = frozenset(n for n in param_names if spec.params.model_fields[n].annotation is int)
        vectors = frozenset(i.name for i in session.get_inputs() if i.name in param_names and len(i.shape) == 1)
        declared = {i.name for i in spec.inputs}
        fixed = tuple(
            (i.name, sizes)
            for i in session.get_inputs()
            if i.name in declared and (sizes := tuple((a, d) for a, d in enumerate(i.shape) if isinstance(d, int)))
        )
        meta = session.get_modelmeta().custom_metadata_map
        blockable = meta.get(ROW_WISE) == "true" and session.get_providers() == [CPU] and not spec.configured
        model = model_bytes if blockable else None
        device = "cuda" if session.get_providers()[0] == CUDA else None
        configured = bool(spec.configured)
        column = dataclasses.replace(key, column=True) if columnable(spec) and not key.column else None
        return Kernel(
            key,
            session,
            names,
            param_names,
            int_params,
            vectors,
            fixed,
            configured,
            model,
            device,
            spec.inputs,
            column,
        )

    @property
    def session_options(self) -> ort.SessionOptions:
        """The options every session here is created with (for graphs built later, e.g. composites)."""
        return self._options

    def variants(self, spec: LossSpec) -> tuple[Variant, ...]:
        """The loss's graph variants here; for a loss that needs a configured object and
        has none, ``NotConfigured``."""
        variants = spec.variants_for(self.resources)
        if not variants:
            name, configured = next(iter(spec.configured.items()))
            raise NotConfigured(spec.name, name, configured.how)
        return variants

    def choices(self, spec: LossSpec) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """The configured names of each of the loss's configured params (for its card)."""
        return tuple(spec.choices(self.resources).items())

    def gradients(self, spec: LossSpec) -> tuple[str, ...]:
        """The inputs some configured variant of the loss differentiates (for its card)."""
        found = {
            n for variant in spec.variants_for(self.resources) for n in spec.differentiable_for(variant, self.resources)
        }
        return tuple(n for n in spec.differentiable if n in found)

    def no_gradients(self, spec: LossSpec) -> tuple[str, ...]:
        """Why each configured variant without gradients has none (for the card); one entry per such variant."""
        reasons = (spec.no_gradients(variant, self.resources) for variant in spec.variants_for(self.resources))
        return tuple(why for why in reasons if why is not None)

    def kernel(self, spec: LossSpec, params: Params, dtype: str, gradients: bool) -> Kernel:
        """The graph for these params; ``NotConfigured`` or ``UnknownChoice`` when they
        name a configured object that is not there."""
        variant = spec.variant(params, self.resources)
        differentiable = spec.differentiable_for(variant, self.resources)
        key = GraphKey(spec.name, variant, dtype, gradients and bool(differentiable))  # type: ignore[arg-type]
        return self._kernel(spec, key)

    def _declared(self, key: GraphKey) -> LossSpec:
        spec = self.specs.get(key.loss)
        assert spec is not None, f"{key.stem}: a column layout is declared, never composed"
        return spec

    def _kernel(self, spec: LossSpec, key: GraphKey) -> Kernel:
        found = self._kernels.get(key)
        if found is None:
            with self._building:  # first use: one thread builds, the others wait for it
                found = self._kernels.get(key)
                if found is None:
                    found = self._kernels[key] = self._build(spec, key)
        return found

    def check_dims(self, kernel: Kernel, arrays: Mapping[str, np.ndarray]) -> None:
        """Sizes the chosen graph fixes (e.g. the channels a configured extractor takes), as
        ``InvalidInput`` naming the input."""
        declared = {x.name: x for x in kernel.layouts}
        for name, sizes in kernel.fixed_dims:
            shape = graph_shape(declared[name], arrays[name].shape)
            if all(shape[axis] == size for axis, size in sizes):
                continue
            dims = list(graph_dims(declared[name].shape))
            for axis, size in sizes:
                dims[axis] = f"{dims[axis]}={size}"
            chosen = ", ".join(f"{k}={v!r}" for k, v in kernel.key.variant)
            detail = f"expected shape ({', '.join(dims)}) with {chosen}, got {list(arrays[name].shape)}"
            raise InvalidInput(name, detail)

    def composite(self, terms: Sequence[Term], dtype: str, gradients: bool) -> CompositeKernel:
        """The graph of an ad-hoc composite of ``terms``, built on first use."""
        return self.composites.kernel(terms, dtype, gradients)  # type: ignore[arg-type]

    def compute(
        self, kernel: Kernel, params: Params, arrays: Mapping[str, np.ndarray], weights: np.ndarray, mean: bool
    ) -> Evaluation:
        """One run on arrays at their natural shapes, in the graph's dtype; gradients come back
        at the shapes of their inputs."""
        names = kernel.outputs
        if kernel.column is not None and one_per_sample(kernel.layouts, arrays):
            kernel = self._kernels.get(kernel.column) or self._kernel(self._declared(kernel.column), kernel.column)
            graph = {x.name: arrays[x.name].reshape(-1) for x in kernel.layouts}
        else:
            graph = to_graph(kernel.layouts, arrays)
        loss, per_sample, *grads = self.run(kernel, params, graph, weights, mean, names)
        differentiable = [name.removeprefix("grad_") for name in names[2:]]
        return Evaluation(loss, per_sample, from_graph(differentiable, grads, arrays))

    def run(
        self,
        kernel: Kernel,
        params: Params,
        arrays: Mapping[str, np.ndarray],
        weights: np.ndarray,
        mean: bool,
        outputs: list[str],
    ) -> list[np.ndarray]:
        """One onnxruntime run with ``arrays`` already at the graph's layout (``compute`` lays
        them out); row blocks or device binding where they pay."""
        dtype = NUMPY_DTYPE[kernel.key.dtype]
        feed: dict[str, Any] = dict(arrays)
        for name in kernel.param_names:
            value = param_feed(getattr(params, name), name in kernel.int_params, dtype)
            feed[name] = value.reshape(-1) if name in kernel.vector_params else value
        if kernel.model is not None and Blocks.worth_it(arrays, weights, mean):
            model = kernel.model
            session = self._blocks.session(kernel.key, lambda: model)
            fixed = {name: value for name, value in feed.items() if name not in arrays}
            return self._blocks.run(session, lambda s, f: s.run(outputs, f), arrays, fixed, weights, mean, outputs)
        feed[WEIGHTS] = weights
        feed[MEAN] = np.array(mean)
        try:
            if kernel.device is not None:
                return run_bound(kernel.session, feed, outputs, kernel.device)
            result: list[np.ndarray] = kernel.session.run(outputs, feed, memory.run_options(feed))
        except Exception as exc:  # onnxruntime's errors share no base class but Exception
            if not kernel.operator_model:
                raise
            shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items())
            reason = str(exc).split("\n")[0]
            raise OperatorModelError(f"{dict(kernel.key.variant)} failed on {shapes}: {reason}") from exc
        return result

    def evaluate(
        self,
        spec: LossSpec,
        inputs: Mapping[str, Any],
        params: Params | None = None,
        *,
        reduction: Literal["mean", "sum", "none"] = "mean",
        weights: Any = None,
        dtype: Literal["float32", "float64"] = "float64",
        gradients: bool = True,
    ) -> Evaluation:
        """In-process use, without the service's validation: arrays at their natural
        shapes in, loss, per-sample losses and gradients (same shapes) out."""
        params = params if params is not None else spec.params()
        np_dtype = NUMPY_DTYPE[dtype]
        arrays = {
            x.name: np.asarray(inputs[x.name], np.int64 if x.integer else np_dtype)
            for x in spec.inputs
            if x.optional is None or inputs.get(x.name) is not None
        }
        arrays = spec.fill_optional(arrays, np_dtype)
        count = 1 if spec.is_batch_level(params) else arrays[spec.inputs[0].name].shape[0]
        w = np.ones(count, np_dtype) if weights is None else np.asarray(weights, np_dtype)
        kernel = self.kernel(spec, params, dtype, gradients)
        result = self.compute(kernel, params, arrays, w, reduction == "mean")
        return result if reduction != "none" else Evaluation(result.per_sample, result.per_sample, result.gradients)

    def model_bytes(self, key: GraphKey, spec: LossSpec | None = None) -> bytes:
        """The serialized graph of ``key`` (``spec``: its loss, when not among the runtime's)."""
        spec = spec or self.specs.get(key.loss)
        assert spec is not None
        differentiable = spec.differentiable_for(key.variant, self.resources)
        key = dataclasses.replace(key, gradients=key.gradients and bool(differentiable))
        data: bytes = build_model(spec, key, self.resources).SerializeToString()
        return data


def cacheable(spec: LossSpec) -> bool:
    """Whether a loss's graphs follow from the sources and the spec alone (not from configured objects)."""
    terms = (*spec.terms, *spec.batch_terms) if isinstance(spec, CompositeSpec) else ()
    return not spec.configured and not any(t.spec.configured for t in terms)


def cache_stem(spec: LossSpec, key: GraphKey) -> str:
    """A graph's cache entry. A named composite's adds a digest of its terms: LOSSD_COMPOSITES can
    give a name other terms from one start to the next, which the sources' digest does not see."""
    if not isinstance(spec, CompositeSpec):
        return key.stem
    terms = repr([(*t.structure, t.weight, t.params, t.pooled) for t in (*spec.terms, *spec.batch_terms)])
    return f"{key.stem}.{hashlib.sha256(terms.encode()).hexdigest()[:16]}"


def prebuild(specs: Registry, cache: GraphCache) -> int:
    """Build every graph that ``cache`` can keep and does not hold yet; how many were built."""
    built = 0
    for spec, key in all_keys(specs):
        if cacheable(spec) and cache.get(stem := cache_stem(spec, key)) is None:
            if not cache.put(stem, build_model(spec, key).SerializeToString()):
                raise OSError(f"cannot write graphs into {cache.directory}")
            built += 1
    return built


def export(specs: Registry, directory: Path, resources: Resources = NO_RESOURCES) -> Path:
    """Write every graph as ``<stem>.onnx`` plus a manifest; returns the manifest path.
    Graphs around configured objects (e.g. ``perceptual`` per feature model) are written
    for what ``resources`` holds, with the sha256 of each object they embed."""
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for spec, key in all_keys(specs, resources):
        model = build_model(spec, key, resources)
        data = model.SerializeToString()
        path = directory / f"{key.stem}.onnx"
        path.write_bytes(data)
        entry = {
            "file": path.name,
            "loss": key.loss,
            "variant": dict(key.variant),
            "dtype": key.dtype,
            "gradients": key.gradients,
            "sha256": hashlib.sha256(data).hexdigest(),
            "inputs": [i.name for i in model.graph.input],
            "outputs": [o.name for o in model.graph.output],
        }
        embedded = fingerprints(spec, key.variant, resources)
        if embedded:
            entry["configured_sha256"] = embedded
        entries.append(entry)
    manifest = directory / MANIFEST
    manifest.write_text(json.dumps({"format": "lossd-model-repository/1", "graphs": entries}, indent=1))
    return manifest


def read_manifest(directory: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """The graph files of a model repository (and their manifest entries) by stem, each
    checked against its hash."""
    manifest = json.loads((directory / MANIFEST).read_text())
    files = {}
    for entry in manifest["graphs"]:
        path = directory / entry["file"]
        if hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
            raise ValueError(f"{path} does not match its manifest hash")
        onnx.checker.check_model(str(path))
        files[path.name.removesuffix(".onnx")] = (path, entry)
    return files


def repository_graph(
    files: Mapping[str, tuple[Path, Mapping[str, Any]]],
    directory: Path | None,
    spec: LossSpec,
    key: GraphKey,
    resources: Resources,
    read: bool = True,
) -> bytes:
    """One graph from a model repository (``read=False``: only checks that it is there); a
    graph around configured objects must have been exported with the very objects configured now."""
    if key.stem not in files:
        raise FileNotFoundError(
            f"model repository {directory} has no graph {key.stem}; re-export it with `lossd export`"
            + (" with the same configuration (e.g. LOSSD_FEATURE_MODELS)" if spec.configured else "")
        )
    path, entry = files[key.stem]
    expected = fingerprints(spec, key.variant, resources)
    if entry.get("configured_sha256", {}) != expected:
        raise ValueError(
            f"model repository graph {path.name} was exported with a different {', '.join(expected)} than the one "
            "configured now; re-export it with `lossd export` under the current configuration"
        )
    return path.read_bytes() if read else b""
