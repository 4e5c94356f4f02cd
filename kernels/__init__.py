"""Loss kernels: declarations (kernels.spec), ONNX graphs (kernels.graph), runtime."""

from kernels import classification, image, imbalance, regression, segmentation
from kernels.spec import REGISTRY, LossSpec, Registry

__all__ = ["REGISTRY", "LossSpec", "Registry", "classification", "image", "imbalance", "regression", "segmentation"]
