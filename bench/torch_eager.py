"""PyTorch eager versions of the registered losses (importing this module imports torch).

Built-in functional losses where torch has them; gradients by autograd, as a PyTorch
user would get them. The reduction is the API's, as in ``bench.baselines``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from bench.baselines import Outputs, param
from kernels.spec import Params

Tensors = Mapping[str, torch.Tensor]
TorchLoss = Callable[[Tensors, Params], tuple[torch.Tensor, torch.Tensor | None]]
"""Element losses ``(N, ...)`` and the mean's mass (None: one per sample)."""

VERSION = torch.__version__


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads)


def tensors(arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Zero-copy views of the numpy inputs."""
    return {name: torch.from_numpy(array) for name, array in arrays.items()}


def per_sample_mean(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).mean(dim=1)


def _reduce(losses: torch.Tensor, mass: torch.Tensor | None, weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
    per_sample = per_sample_mean(losses)
    denominator = (weights if mass is None else weights * per_sample_mean(mass)).sum()
    return (weights * per_sample).sum() / denominator, per_sample


def evaluate(fn: TorchLoss, x: Tensors, params: Params, weights: torch.Tensor, gradients: bool) -> Outputs:
    if not gradients:
        with torch.inference_mode():
            loss, per_sample = _reduce(*fn(x, params), weights)
        return Outputs(loss.numpy(), per_sample.numpy(), None)
    predictions = x["predictions"].detach().requires_grad_(True)
    loss, per_sample = _reduce(*fn({**x, "predictions": predictions}, params), weights)
    (gradient,) = torch.autograd.grad(loss, predictions)
    return Outputs(loss.detach().numpy(), per_sample.detach().numpy(), gradient.numpy())


def mse(x: Tensors, params: Params) -> tuple[torch.Tensor, None]:
    return F.mse_loss(x["predictions"], x["targets"], reduction="none"), None


def mae(x: Tensors, params: Params) -> tuple[torch.Tensor, None]:
    return F.l1_loss(x["predictions"], x["targets"], reduction="none"), None


def huber(x: Tensors, params: Params) -> tuple[torch.Tensor, None]:
    return F.huber_loss(x["predictions"], x["targets"], reduction="none", delta=param(params, "delta")), None


def log_cosh(x: Tensors, params: Params) -> tuple[torch.Tensor, None]:
    d = x["predictions"] - x["targets"]
    return d + F.softplus(-2 * d) - math.log(2), None


def _clamp(p: torch.Tensor, params: Params) -> torch.Tensor:
    eps = param(params, "eps")
    return p.clamp(eps, 1 - eps)


def binary_cross_entropy(x: Tensors, params: Params) -> tuple[torch.Tensor, None]:
    if param(params, "from_logits") or param(params, "pos_weight") is not None:
        raise NotImplementedError("only the default variant")
    return F.binary_cross_entropy(_clamp(x["predictions"], params), x["targets"], reduction="none"), None


def focal(x: Tensors, params: Params) -> tuple[torch.Tensor, None]:
    """torchvision's sigmoid_focal_loss, on probabilities."""
    if param(params, "from_logits") or param(params, "label_smoothing") or param(params, "alpha") < 0:
        raise NotImplementedError("only the default variant")
    p, y = _clamp(x["predictions"], params), x["targets"]
    alpha, gamma = param(params, "alpha"), param(params, "gamma")
    ce = F.binary_cross_entropy(p, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    alpha_t = alpha * y + (1 - alpha) * (1 - y)
    return alpha_t * ce * (1 - p_t) ** gamma, None


def _renormalised_log(p: torch.Tensor, params: Params) -> torch.Tensor:
    return _clamp(p / p.sum(dim=-1, keepdim=True), params).log()


def cross_entropy(x: Tensors, params: Params) -> tuple[torch.Tensor, None]:
    if param(params, "from_logits") or param(params, "label_smoothing") or param(params, "class_weights"):
        raise NotImplementedError("only the default variant")
    return -(x["targets"] * _renormalised_log(x["predictions"], params)).sum(dim=-1), None


def sparse_cross_entropy(x: Tensors, params: Params) -> tuple[torch.Tensor, torch.Tensor]:
    if param(params, "from_logits") or param(params, "label_smoothing") or param(params, "class_weights"):
        raise NotImplementedError("only the default variant")
    labels, ignore = x["targets"], param(params, "ignore_index")
    log_q = _renormalised_log(x["predictions"], params).movedim(-1, 1)
    losses = F.nll_loss(log_q, labels, reduction="none", ignore_index=ignore)
    return losses, (labels != ignore).to(losses.dtype)


TORCH: dict[str, TorchLoss] = {
    "mse": mse,
    "mae": mae,
    "huber": huber,
    "log_cosh": log_cosh,
    "binary_cross_entropy": binary_cross_entropy,
    "focal": focal,
    "cross_entropy": cross_entropy,
    "sparse_cross_entropy": sparse_cross_entropy,
}
