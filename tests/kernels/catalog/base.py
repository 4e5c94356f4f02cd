"""What a loss's test declaration holds: one :class:`LossInfo` per registered loss.

Modelled on PyTorch's ``OpInfo`` (and onnxscript's ``TorchLibOpInfo``): each kernel family has a module
here (``tests/kernels/catalog/<family>.py``, beside ``kernels/<family>.py``) whose ``LOSSES`` declares,
for each of its losses, everything the kernel tests verify it with:

* ``golden`` (:class:`Golden`): the reference (torch, Keras, MONAI, SciPy, scikit-image; run only by the
  golden generator, ``python -m tests.kernels.catalog.golden``), its input generator, the param combos,
  data kinds and shapes of the cases, the conventions and the tolerance ``tests/kernels/test_golden.py``
  compares with; or :class:`GoldenElsewhere`, where no library computes the loss.
* ``gradients`` (:class:`GradientCase`): the finite-difference inputs (kept away from the loss's kinks)
  and param sets of ``tests/kernels/test_gradients.py``, with its step and tolerances; or
  :class:`NoGradients` for a loss without differentiable inputs.
* ``domain``: the :class:`tests.kernels.properties.Domain` of the loss's default form, on which
  ``tests/kernels/test_properties.py`` checks every claim of its card; ``property_params`` for a loss
  with a required param.

Naming in the family modules: ``ref_*`` are references, ``*_data`` golden inputs
``(kind, shape, rng, params)``, ``fd_*`` finite-difference inputs ``(rng, params)``. The golden and
finite-difference inputs are separate on purpose: the goldens seek out the edges (saturation, clips,
kinks, zeros), the finite differences must stay off them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from tests.kernels.catalog.reference import Ctx, Tensor, Tensors
from tests.kernels.properties import Domain

Arrays = dict[str, np.ndarray]
GoldenData = Callable[[str, tuple[int, ...], np.random.Generator, dict[str, Any]], Arrays]
"""``(kind, shape, rng, params) -> inputs`` at their natural shape (floats as float64, integer inputs as
integers); ``kind`` is one of the case's data kinds (``"random"``, ``"extreme"``, ...)."""
FdData = Callable[[np.random.Generator, dict[str, Any]], Arrays]
"""``(rng, params) -> inputs`` for finite differences, away from the loss's kinks."""
Frozen = Callable[[Arrays, Arrays, dict[str, Any]], np.ndarray]
"""``(inputs, base inputs, params) -> per-sample correction``: what to add to the per-sample loss at ``inputs``
so that its derivative at the base inputs is the kernel's gradient, for a loss whose gradient holds a term
constant by definition (CIoU's alpha: ``(alpha(base) - alpha(inputs)) v(inputs)``)."""
Reference = Callable[[Tensors, Ctx], tuple[Tensor, Tensor | None]]
"""``(tensors, ctx) -> (element losses E, mass M or None)``: the differentiable inputs are float64 leaves
of torch autograd (``predictions_native`` holds the predictions in the case dtype, for Keras functions
that clip); ``M`` weighs the mean (``sparse_cross_entropy``'s class weights, CTC's target lengths)."""
Combo = tuple[dict[str, Any], tuple[str, ...]]
"""Params (``"per_class"``, ``"per_class_with_zero"``: one value per class, drawn per case) and the data
kinds each is generated with."""
ShapedCombo = tuple[dict[str, Any], tuple[str, ...], Mapping[str, tuple[int, ...]]]
"""A combo with its own named shapes instead of the declaration's (e.g. the batch form of the overlap losses
on 2-D and 3-D images, which the other combos need not repeat)."""

SHAPES: dict[str, tuple[int, ...]] = {"1d": (9,), "2d": (4, 5), "3d": (3, 2, 4), "2d-wide": (3, 7)}
"""Named golden shapes for losses whose inputs share one shape (a :class:`Golden`'s ``shapes`` names them)."""
DEFAULT_SHAPES = ("2d", "3d")
ELEMENT_SHAPES = ("1d", "2d", "3d")
"""Element-wise losses also take one value per sample, ``(N,)``: the runtime's column layout."""
ONE = ("random",)
BOTH = ("random", "extreme")
ALL = ("random", "extreme", "confident")

CONVENTIONS = (
    "per_sample = mean over non-batch axes of the reference's element losses (class-wise losses summed over the last "
    "axis); mean = sum(w*l)/sum(w) (sparse_cross_entropy: divided by sum(w * per-sample mean of the mass)); sum = "
    "sum(w*l); none = per_sample, gradients of per_sample.sum(). Reference evaluated in float64 on inputs rounded to "
    "the case dtype, with the dtype's clip bounds; see the script's docstring."
)
"""The conventions text a golden file records (unless its loss declares its own)."""
GOLDEN_TOLERANCE: Mapping[str, tuple[float, float]] = {"float64": (1e-10, 1e-12), "float32": (1e-5, 1e-6)}
"""dtype: (rtol, atol relative to the array's scale)."""


@dataclass(frozen=True)
class Golden:
    """How ``tests/golden/<loss>.json`` is made, and how closely the kernel must match it.

    One case per (combo, data kind, shape, dtype); each holds the reference's loss and gradients for
    every reduction, with and without sample weights (``tests/kernels/catalog/golden.py``)."""

    reference: Reference
    data: GoldenData
    describe: Callable[[dict[str, Any]], str]
    """The reference, in words, for a case's params (recorded in each case)."""
    combos: tuple[Combo, ...]
    shapes: tuple[str, ...] | Mapping[str, tuple[int, ...]] = DEFAULT_SHAPES
    """Names in :data:`SHAPES`, or the loss's own named shapes (for a loss whose inputs differ in shape,
    the shape its data generator takes)."""
    also_differentiable: tuple[str, ...] = ()
    """Differentiable inputs besides ``predictions`` (Gaussian NLL's variance)."""
    differentiable: tuple[str, ...] | None = None
    """For losses without ``predictions``/``targets`` (pairs, triplets, GAN batches): every differentiable
    input, each a float64 leaf of the reference's autograd graph (no ``predictions_native``)."""
    batch_level: bool = False
    """One value for the whole batch: per_sample = [loss], no sample weights."""
    batch_param: str | None = None
    """A boolean param that makes a case batch-level (MONAI's ``batch``), as ``batch_level`` for those cases."""
    shaped: tuple[ShapedCombo, ...] = ()
    """Combos with their own shapes, after ``combos`` (those take ``shapes``)."""
    reduce: Literal["api", "ctc"] = "api"
    """``ctc``: the mean divides each sample's loss by its mass (torch's CTC mean)."""
    versions: tuple[str, ...] = ()
    """Libraries whose versions the file records besides torch and Keras."""
    conventions: str = CONVENTIONS
    tolerance: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(GOLDEN_TOLERANCE))
    """dtype: (rtol, atol relative to the array's scale) of ``tests/kernels/test_golden.py``."""

    def shape(self, name: str) -> tuple[int, ...]:
        return self.shapes[name] if isinstance(self.shapes, Mapping) else SHAPES[name]

    def cases(self) -> list[tuple[dict[str, Any], str, str, tuple[int, ...]]]:
        """(params, data kind, shape name, shape) of every case but the dtype, in the golden file's order."""
        out = [
            (params, kind, name, self.shape(name))
            for params, kinds in self.combos
            for kind in kinds
            for name in self.shapes
        ]
        out += [
            (params, kind, name, shape)
            for params, kinds, shapes in self.shaped
            for kind in kinds
            for name, shape in shapes.items()
        ]
        return out

    def is_batch_level(self, params: Mapping[str, Any]) -> bool:
        """Whether a case with these params is one value for the whole batch."""
        return self.batch_level or bool(self.batch_param and params.get(self.batch_param))


@dataclass(frozen=True)
class GoldenElsewhere:
    """No library computes the loss: the test module (under ``tests/``) that checks it against an
    independent reference instead, and why."""

    test: str
    why: str


@dataclass(frozen=True)
class GradientCase:
    """Finite-difference inputs and the params to try (``from_logits`` is tried both ways wherever the
    loss has it); every one is checked for every reduction, with and without sample weights."""

    inputs: FdData
    params: tuple[dict[str, Any], ...] = ({},)
    step: float = 1e-6
    """Central-difference step."""
    rtol: float = 1e-6
    atol: float = 1e-7
    """Absolute tolerance relative to the largest gradient entry (for entries near zero)."""
    frozen: Frozen | None = None
    """For a gradient that holds a term constant (see :data:`Frozen`); None: the loss's own derivative."""


@dataclass(frozen=True)
class NoGradients:
    """A loss without differentiable inputs (the kernel returns no gradients): why, and valid inputs."""

    why: str
    inputs: FdData


@dataclass(frozen=True)
class LossInfo:
    """Everything the kernel tests verify one registered loss with (see the module docstring)."""

    name: str
    golden: Golden | GoldenElsewhere
    gradients: GradientCase | NoGradients
    domain: Domain
    property_params: Mapping[str, Any] = field(default_factory=dict)
    """Params the card's claims are checked with, for a loss with a required param (no default);
    also the composite pair tests' params (per-class lists for C = 3)."""
    whole: str | None = None
    """Why the loss never runs in row blocks (batch-level, masses, a batch-wide rule); None: row-wise."""
