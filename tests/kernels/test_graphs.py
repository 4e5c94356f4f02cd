"""Every graph is a valid ONNX model; `lossd export` writes a model repository the
service starts from."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from kernels import REGISTRY
from kernels.graph import build_model
from kernels.runtime import Runtime, all_keys, export
from service.cli import main

KEYS = list(all_keys(REGISTRY))


@pytest.mark.parametrize(("spec", "key"), KEYS, ids=[key.stem for _, key in KEYS])
def test_graph_is_checked_and_shape_inferred(spec: object, key: object) -> None:
    model = build_model(spec, key)  # type: ignore[arg-type]
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    outputs = {o.name for o in inferred.graph.output}
    assert {"loss", "per_sample"} <= outputs
    assert ({f"grad_{n}" for n in spec.differentiable} <= outputs) == key.gradients  # type: ignore[attr-defined]
    # No model-local functions remain: everything is inlined for onnxruntime.
    assert not model.functions


def test_export_and_serve_from_the_repository(tmp_path: Path) -> None:
    main(["export", str(tmp_path)])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert len(manifest["graphs"]) == len(KEYS)
    assert all((tmp_path / g["file"]).exists() for g in manifest["graphs"])
    from_files = Runtime(REGISTRY, provider="cpu", model_repository=tmp_path)
    in_memory = Runtime(REGISTRY, provider="cpu")
    spec = REGISTRY.get("huber")
    assert spec is not None
    params = spec.params()
    arrays = {"predictions": np.array([[0.5, 3.0]]), "targets": np.zeros((1, 2))}
    outputs = ["loss", "grad_predictions"]
    for runtime in (from_files, in_memory):
        loss, grad = runtime.run(
            runtime.kernel(spec, params, "float64", True), params, arrays, np.ones(1), True, outputs
        )
        assert loss == pytest.approx((0.125 + 2.5) / 2)
        np.testing.assert_allclose(grad, [[0.25, 0.5]])


def test_a_tampered_repository_is_refused(tmp_path: Path) -> None:
    export(REGISTRY, tmp_path)
    victim = next(tmp_path.glob("mse.*.onnx"))
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="does not match its manifest hash"):
        Runtime(REGISTRY, provider="cpu", model_repository=tmp_path)


def test_a_param_selects_a_graph_by_presence() -> None:
    bce = REGISTRY.get("binary_cross_entropy")
    assert bce is not None
    default = dict(bce.variant(bce.params()))
    assert default == {"from_logits": False, "label_smoothing": False, "pos_weight": False}
    assert dict(bce.variant(bce.params.model_validate({"label_smoothing": 0.1})))["label_smoothing"] is True
    # An optional param is off only when None: a pos_weight of 0 is a weight, not an absent one;
    # a plain number is off at 0, whatever its default.
    assert dict(bce.variant(bce.params.model_validate({"pos_weight": 0.0})))["pos_weight"] is True
    smoothed = REGISTRY.get("label_smoothing_cross_entropy")
    assert smoothed is not None
    assert dict(smoothed.variant(smoothed.params.model_validate({"label_smoothing": 0.0})))["label_smoothing"] is False
