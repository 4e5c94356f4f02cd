"""What the references share: the reference libraries, imported on first use, and the case context.

The declarations (one module per kernel family) hold each loss's reference next to its inputs, but the
suite needs only numpy: ``torch``, ``F``, ``keras``, ``monai``, ``scipy``, ``skimage`` and
``pytorch_msssim`` here are stand-ins that import the library the first time a reference touches them,
which only the golden generator does (``python -m tests.kernels.catalog.golden``, with the
``reference`` extra). A reference therefore uses them only inside its body, never at module level.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

Tensor = Any
"""A torch tensor (torch is not installed where the suite and mypy run)."""
Tensors = dict[str, Tensor]
"""A case's inputs as float64 tensors (integer inputs as int64), by input name."""

DEFAULT_EPS = 1e-7
"""The kernels' default probability clip."""
KERAS_EPS = 1e-7
"""``keras.config.epsilon()``, which the generator checks when it starts."""


class Library:
    """A module imported on first attribute access; a missing attribute is tried as a submodule
    (``monai.losses``, ``scipy.stats``). Keras is imported with the torch backend."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        if self._name.partition(".")[0] == "keras":
            os.environ["KERAS_BACKEND"] = "torch"
        module = importlib.import_module(self._name)
        try:
            value = getattr(module, attr)
        except AttributeError:
            value = importlib.import_module(f"{self._name}.{attr}")
        setattr(self, attr, value)  # later lookups are plain attributes (references run in loops)
        return value

    def __repr__(self) -> str:
        return f"Library({self._name!r})"


torch: Any = Library("torch")
F: Any = Library("torch.nn.functional")
keras: Any = Library("keras")
monai: Any = Library("monai")
scipy: Any = Library("scipy")
skimage: Any = Library("skimage")
pytorch_msssim: Any = Library("pytorch_msssim")
scoringrules: Any = Library("scoringrules")
properscoring: Any = Library("properscoring")


@contextlib.contextmanager
def float_keeps_double() -> Iterator[None]:
    """``Tensor.float()`` leaves float64 tensors float64 inside the block: for references that cast
    intermediate values to float32 (MONAI's generalised Dice weights, smp's Lovász weights), so that the
    golden is their formula in float64; the unpatched reference is then a loose cross-check."""
    as_float = torch.Tensor.float
    torch.Tensor.float = lambda self, *a, **k: self if self.dtype == torch.float64 else as_float(self, *a, **k)
    try:
        yield
    finally:
        torch.Tensor.float = as_float


@functools.cache
def smp_losses() -> Any:
    """``segmentation_models_pytorch.losses`` without the package's ``__init__``: that imports its models,
    hence torchvision, whose compiled ops need the torchvision build of the same torch; the losses need
    only torch."""
    name = "segmentation_models_pytorch"
    if name not in sys.modules:
        found = importlib.util.find_spec(name)
        assert found is not None and found.submodule_search_locations is not None, f"{name} is not installed"
        package = types.ModuleType(name)
        package.__path__ = list(found.submodule_search_locations)
        sys.modules[name] = package
    return importlib.import_module(f"{name}.losses")


LIBRARIES = (
    "torch",
    "keras",
    "monai",
    "scipy",
    "skimage",
    "pytorch_msssim",
    "pytorch_metric_learning",
    "segmentation_models_pytorch",
    "torchvision",
    "scoringrules",
    "properscoring",
)
"""The top-level modules the stand-ins import (a test checks the suite imports none of them)."""


def torchvision_ops() -> Any:
    """``torchvision.ops``; where torchvision's compiled operators do not match the installed torch (its
    import fails registering them), its box losses, which are plain torch code, loaded from their files."""
    try:
        return importlib.import_module("torchvision.ops")
    except (ImportError, RuntimeError):
        pass
    import importlib.util as util
    import sys
    import types

    spec = util.find_spec("torchvision")
    assert spec is not None and spec.origin is not None, "torchvision is not installed"
    root = os.path.dirname(spec.origin)
    package = types.ModuleType("_torchvision_boxes")
    package.__path__ = []
    utils = types.ModuleType("_torchvision_boxes.utils")
    utils._log_api_usage_once = lambda _: None  # type: ignore[attr-defined]
    ops = types.ModuleType("_torchvision_boxes.ops")
    ops.__path__ = []
    sys.modules.update({package.__name__: package, utils.__name__: utils, ops.__name__: ops})
    for name in ("_utils", "giou_loss", "diou_loss", "ciou_loss"):
        found = util.spec_from_file_location(f"{ops.__name__}.{name}", os.path.join(root, "ops", f"{name}.py"))
        assert found is not None and found.loader is not None
        module = util.module_from_spec(found)
        sys.modules[found.name] = module
        found.loader.exec_module(module)
        for attr in dir(module):
            if attr.endswith("_loss"):
                setattr(ops, attr, getattr(module, attr))
    return ops


class Ctx:
    """What a reference needs to know about the case besides its tensors."""

    def __init__(self, dtype: str, params: dict[str, Any], checks: list[str]) -> None:
        self.dtype = dtype
        self.params = params
        self.checks = checks

    def f(self, name: str, default: Any = None) -> Any:
        """A float param (or list of floats) rounded to the case dtype."""
        value = self.params.get(name, default)
        if value is None:
            return None
        return np.asarray(value, dtype=self.dtype).astype(np.float64).tolist()

    def bounds(self) -> tuple[float, float]:
        eps = np.asarray(self.params.get("eps", DEFAULT_EPS), dtype=self.dtype)
        return float(eps), float(np.asarray(1, dtype=self.dtype) - eps)

    def check(self, what: str, ours: Tensor, theirs: Tensor, rtol: float = 1e-12) -> None:
        a = ours.detach().double().numpy()
        b = theirs.detach().double().numpy()
        scale = max(float(np.max(np.abs(b))), 1e-300)
        err = float(np.max(np.abs(a - b)) / scale)
        if not np.allclose(a, b, rtol=rtol, atol=rtol * scale):
            raise AssertionError(f"cross-check failed: {what}: {a} vs {b}")
        self.checks.append(f"{what}: max diff {err:.1e} (relative to max |value|)")


def in_dtype(value: float, dtype: str) -> float:
    """A constant as the kernel holds it in the case dtype (e.g. 1e-7 in float32)."""
    return float(np.asarray(value, dtype=dtype))


def keras_native(t: Tensors, c: Ctx) -> tuple[Tensor, Tensor]:
    """Predictions and targets in the case dtype, for Keras functions that clip."""
    x = t["predictions_native"]
    return x, t["targets"].to(x.dtype) if t["targets"].is_floating_point() else t["targets"]


def with_keras_eps(eps: float, fn: Callable[[], Tensor]) -> Tensor:
    """``fn()`` with Keras's epsilon set to ``eps``."""
    keras.config.set_epsilon(eps)
    try:
        return fn()
    finally:
        keras.config.set_epsilon(KERAS_EPS)
