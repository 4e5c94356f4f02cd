"""Write tests/golden/extractors/perceptual_gradients.json: the perceptual loss and its gradients by torch
autograd, through torch twins of the test extractors (tests/feature_models.py: the same seeded
weights, each operator as torch has it), for tests/kernels/test_perceptual_gradients.py.

Run from the repository root with the reference environment (torch 2.13 CPU)::

    PYTHONPATH=$PWD /work/refvenv/bin/python -m tests.kernels.perceptual_golden

The twins run in float64 on the float32 weights (exact in float64), so a value is the exact loss
at float32-exact inputs. The script first checks each twin's feature maps against onnxruntime
running the ONNX extractor (a twin that is not the same function would make the goldens
meaningless). The distance is LPIPS's without learned heads, its norm taken with
torch.linalg.vector_norm (whose derivative at a zero vector is 0, as the kernel takes it).
Gradients: of the weighted mean and the weighted sum of per_sample, and of sum(per_sample)
(reduction none).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from tests.feature_models import feature_maps, pointwise_extractor, pointwise_weights, vgg_extractor, vgg_weights

OUT = Path(__file__).resolve().parents[1] / "golden" / "extractors" / "perceptual_gradients.json"
Tensor = Any


def vgg_twin(x: Tensor, seed: int = 23) -> list[Tensor]:
    w = {k: torch.from_numpy(v.astype(np.float64)) for k, v in vgg_weights(seed).items()}
    z = F.pad((x - w["shift"]) / w["scale"], (1, 1, 1, 1))
    c1 = F.conv2d(z, w["w1"], w["b1"])
    relu1 = torch.relu(F.batch_norm(c1, w["bn_mean"], w["bn_var"], w["bn_scale"], w["bn_bias"], False, 0.0, 1e-5))
    relu2 = torch.relu(F.conv2d(F.max_pool2d(relu1, 2, 2), w["w2"], w["b2"], padding=1))
    both = torch.cat([relu2, relu2 * w["channel_scale"]], dim=1)
    pooled = F.avg_pool2d(both, 3, 2, padding=1, count_include_pad=True)
    lrelu3 = F.leaky_relu(F.conv2d(pooled, w["w3"], padding=1, groups=4), 0.1)
    fc = torch.sigmoid(F.linear(F.adaptive_avg_pool2d(lrelu3, 1).flatten(1), w["wf"], w["bf"]))
    clip = torch.clamp(fc @ w["wm"] + w["bm"], -0.5, 0.5)
    return [relu1, relu2, lrelu3, lrelu3.reshape(len(x), 16, -1), fc, clip]


def pointwise_twin(x: Tensor, seed: int = 5) -> list[Tensor]:
    w = {k: torch.from_numpy(v) for k, v in pointwise_weights(seed).items()}
    h1 = torch.relu(x.permute(0, 2, 3, 1) @ w["w1"] + w["b1"])
    h2 = torch.relu(h1 @ w["w2"] + w["b2"])
    return [h1.permute(0, 3, 1, 2), h2.permute(0, 3, 1, 2)]


def per_sample(features_p: list[Tensor], features_t: list[Tensor]) -> Tensor:
    total = torch.zeros(len(features_p[0]), dtype=torch.float64)
    for fp, ft in zip(features_p, features_t, strict=True):
        up, ut = (f / (torch.linalg.vector_norm(f, dim=1, keepdim=True) + 1e-10) for f in (fp, ft))
        total = total + ((up - ut) ** 2).sum(dim=1).reshape(len(total), -1).mean(dim=1)
    return total


TWINS: dict[str, Any] = {
    "vgg": (vgg_extractor, vgg_twin, (2, 3, 9, 8), np.float32),
    "pointwise64": (pointwise_extractor, pointwise_twin, (3, 2, 4, 3), np.float64),
}


def case(name: str, directory: Path) -> dict[str, Any]:
    build, twin, shape, dtype = TWINS[name]
    rng = np.random.default_rng(len(name) * 101)
    predictions = rng.uniform(-1, 1, shape).astype(dtype).astype(np.float64)
    targets = (predictions + rng.normal(size=shape) * 0.3).astype(dtype).astype(np.float64)
    weights = rng.uniform(0.5, 2.0, shape[0])
    path = directory / f"{name}.onnx"
    onnx.save(build(), str(path))
    for images in (predictions, targets):  # the twin is the ONNX extractor
        for ours, theirs in zip(twin(torch.from_numpy(images)), feature_maps(path, images), strict=True):
            np.testing.assert_allclose(ours.numpy(), theirs, rtol=2e-5, atol=2e-5 * np.abs(theirs).max())
    result: dict[str, Any] = {
        "predictions": predictions.tolist(),
        "targets": targets.tolist(),
        "weights": weights.tolist(),
        "gradients": {},
    }
    with torch.no_grad():
        features_t = twin(torch.from_numpy(targets))
    w = torch.from_numpy(weights)
    for reduction in ("mean", "sum", "none"):
        x = torch.from_numpy(predictions.copy()).requires_grad_(True)
        losses = per_sample(twin(x), features_t)
        value = {"mean": (w * losses).sum() / w.sum(), "sum": (w * losses).sum(), "none": losses.sum()}[reduction]
        (gradient,) = torch.autograd.grad(value, x)
        result["gradients"][reduction] = gradient.tolist()
        result["per_sample"] = losses.detach().tolist()
    return result


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        cases = {name: case(name, Path(directory)) for name in TWINS}
    document = {
        "generated_by": "tests/kernels/perceptual_golden.py",
        "torch": torch.__version__,
        "weights": "the mean and sum gradients are of the weighted reductions with the case's weights",
        "cases": cases,
    }
    OUT.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
