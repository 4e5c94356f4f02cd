"""Feature extractors the operator configures (``LOSSD_FEATURE_MODELS``) for feature-space
losses such as ``perceptual``.

An extractor is an ONNX model read from a local file (nothing is ever downloaded) that
takes one image batch ``(N, C, H, W)`` with a dynamic batch axis and returns one or more
feature maps ``(N, C_k, ...)``. It is checked once, at start-up, with errors that name
the configured entry; its model-local functions are inlined and its opset is converted to
the loss graphs' opset, so that a loss graph can inline its nodes (``extractor_nodes``)
and run the whole loss as one onnxruntime session.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnx.inliner
import onnx.version_converter
from onnx import TensorProto, helper

from kernels.backward import supported

FEATURE_MODELS = "feature_models"
"""The runtime resources collection that holds the configured extractors by name."""
HOW_TO_CONFIGURE = (
    "start lossd with LOSSD_FEATURE_MODELS=name=/path/to/extractor.onnx (several: name1=a.onnx,name2=b.onnx); "
    "an extractor is an ONNX model from images (N, C, H, W) to one or more feature maps (N, C_k, ...)"
)
NAME = re.compile(r"[A-Za-z0-9_-]+")
FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16)
OPSET = 18
"""The opset of the loss graphs (kernels.graph.OPSET) that extractors are converted to."""


class FeatureModelError(ValueError):
    """A configured feature extractor that cannot be used; the message says why and what to do."""


@dataclass(frozen=True, eq=False)
class FeatureModel:
    """A checked extractor, ready to be inlined into a loss graph."""

    name: str
    path: Path
    model: onnx.ModelProto
    """The extractor at ``OPSET``, with its model-local functions inlined."""
    input_name: str
    input_type: int
    input_shape: tuple[int | None, ...]
    """``(N, C, H, W)``: a size where the extractor fixes it, else None (N is always None)."""
    outputs: tuple[str, ...]
    sha256: str
    """Of the loaded model (with any external data), to tie exported graphs to it."""
    source_opset: int
    no_gradients: str | None = None
    """Why no backward can be built through it (an operator kernels.backward has no rule for); None: it can."""

    def describe(self) -> str:
        c, h, w = (("?" if d is None else str(d)) for d in self.input_shape[1:])
        return f"{self.name} ({self.path.name}: images (N, {c}, {h}, {w}) -> {len(self.outputs)} feature maps)"


def _fail(name: str, path: Path, why: str) -> FeatureModelError:
    return FeatureModelError(f"LOSSD_FEATURE_MODELS entry {name}={path}: {why}")


def _tensor_type(value: onnx.ValueInfoProto) -> tuple[int, tuple[int | None, ...] | None]:
    """Element type and dims (None for a symbolic size; no dims when the rank is unknown)."""
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        return TensorProto.UNDEFINED, None
    if not tensor.HasField("shape"):
        return tensor.elem_type, None
    dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
    return tensor.elem_type, dims


def load_feature_model(name: str, path: Path) -> FeatureModel:
    """Read and check one extractor; any problem is a ``FeatureModelError`` naming the entry."""
    if not NAME.fullmatch(name):
        raise _fail(name, path, "the name may only use letters, digits, '_' and '-'")
    if not path.is_file():
        raise _fail(name, path, "no such file")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf's and the checker's errors have no common base
        raise _fail(name, path, f"not a valid ONNX model ({type(exc).__name__}: {exc})") from None
    digest = hashlib.sha256(model.SerializeToString()).hexdigest()
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)
    domains = {o.domain: o.version for o in model.opset_import}
    foreign = sorted(d for d in domains if d not in ("", "ai.onnx"))
    used = {n.domain for n in model.graph.node}
    if set(foreign) & used:
        raise _fail(name, path, f"uses operators of domains {foreign}; only standard ONNX operators are supported")
    source_opset = domains.get("", domains.get("ai.onnx", 0))
    if source_opset != OPSET:
        try:
            model = onnx.version_converter.convert_version(model, OPSET)
        except Exception as exc:
            raise _fail(
                name, path, f"cannot convert its opset {source_opset} to {OPSET} ({exc}); export it at opset {OPSET}"
            ) from None
    weights = {i.name for i in model.graph.initializer}
    images = [i for i in model.graph.input if i.name not in weights]
    if len(images) != 1:
        found = ", ".join(i.name for i in images) or "none"
        why = f"takes {len(images)} inputs ({found}); an extractor takes one image batch (N, C, H, W)"
        raise _fail(name, path, why)
    (image,) = images
    elem_type, dims = _tensor_type(image)
    if elem_type not in FLOAT_TYPES:
        raise _fail(name, path, f"its input {image.name!r} is not a floating-point tensor")
    if dims is None or len(dims) != 4:
        rank = "unknown" if dims is None else len(dims)
        raise _fail(name, path, f"its input {image.name!r} has rank {rank}; an extractor takes images (N, C, H, W)")
    if dims[0] is not None:
        raise _fail(
            name,
            path,
            f"its input {image.name!r} has a fixed batch size {dims[0]}; export it with a dynamic batch axis "
            "(e.g. torch.onnx.export(..., dynamic_axes={'input': {0: 'N'}}))",
        )
    if not model.graph.output:
        raise _fail(name, path, "has no outputs")
    for output in model.graph.output:
        out_type, out_dims = _tensor_type(output)
        if out_type not in FLOAT_TYPES:
            raise _fail(name, path, f"its output {output.name!r} is not a floating-point tensor")
        if out_dims is not None and len(out_dims) < 2:
            raise _fail(name, path, f"its output {output.name!r} has rank {len(out_dims)}; features are (N, C_k, ...)")
    return FeatureModel(
        name=name,
        path=path,
        model=model,
        input_name=image.name,
        input_type=elem_type,
        input_shape=dims,
        outputs=tuple(o.name for o in model.graph.output),
        sha256=digest,
        source_opset=source_opset,
        no_gradients=supported(model, image.name, [o.name for o in model.graph.output]),
    )


def load_feature_models(paths: Mapping[str, Path]) -> dict[str, FeatureModel]:
    """Every configured extractor by name, in the configured order (the first is the default)."""
    return {name: load_feature_model(name, Path(path)) for name, path in paths.items()}


def _rename_graph(graph: onnx.GraphProto, names: Mapping[str, str]) -> None:
    """Rename references to outer names inside a subgraph (ONNX forbids shadowing)."""
    for node in graph.node:
        _rename_node(node, names)


def _rename_node(node: onnx.NodeProto, names: Mapping[str, str]) -> None:
    node.input[:] = [names.get(n, n) for n in node.input]
    node.output[:] = [names.get(n, n) for n in node.output]
    for attribute in node.attribute:
        if attribute.HasField("g"):
            _rename_graph(attribute.g, names)
        for subgraph in attribute.graphs:
            _rename_graph(subgraph, names)


def extractor_nodes(model: FeatureModel, images: str, prefix: str) -> tuple[list[onnx.NodeProto], list[str]]:
    """The extractor as nodes for a function body: it reads ``images`` (already in its
    input type), its weights become Constant nodes, and every name it defines gets
    ``prefix`` so that nothing clashes with the surrounding graph. Returns the nodes and
    the names of its feature maps."""
    nodes, names = graph_nodes(model.model.graph, model.input_name, images, prefix)
    return nodes, [names.get(o, o) for o in model.outputs]


def graph_nodes(
    graph: onnx.GraphProto, input_name: str, images: str, prefix: str
) -> tuple[list[onnx.NodeProto], dict[str, str]]:
    """``graph`` (an extractor's, or one with its backward) as function-body nodes, as
    ``extractor_nodes`` makes them; returns the nodes and the new name of every name it
    defines (names it reads without defining them, e.g. cotangents, stay as they are)."""
    defined = [input_name, *(i.name for i in graph.initializer)]
    defined += [sparse.values.name for sparse in graph.sparse_initializer]
    defined += [out for node in graph.node for out in node.output if out]
    names = {n: prefix + n for n in defined}
    names[input_name] = images
    nodes = [
        helper.make_node("Constant", [], [names[init.name]], name=f"{prefix}{init.name}", value=init)
        for init in graph.initializer
    ]
    nodes += [
        helper.make_node("Constant", [], [names[sparse.values.name]], sparse_value=sparse)
        for sparse in graph.sparse_initializer
    ]
    for original in graph.node:
        node = onnx.NodeProto()
        node.CopyFrom(original)
        node.name = prefix + (node.name or node.op_type)
        _rename_node(node, names)
        nodes.append(node)
    return nodes, names
