"""Loss kernels: declarations (kernels.spec), ONNX graphs (kernels.graph), runtime."""

from kernels import (
    boxes,
    classification,
    composites,
    generative,
    image,
    imbalance,
    lovasz,
    margin,
    metric_learning,
    perceptual,
    probabilistic,
    ranking,
    regression,
    segmentation,
    sequence,
)
from kernels.spec import REGISTRY, LossSpec, Registry

__all__ = [
    "REGISTRY",
    "LossSpec",
    "Registry",
    "boxes",
    "classification",
    "composites",
    "generative",
    "image",
    "imbalance",
    "lovasz",
    "margin",
    "metric_learning",
    "perceptual",
    "probabilistic",
    "ranking",
    "regression",
    "segmentation",
    "sequence",
]
