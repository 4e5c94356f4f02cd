"""Write tests/golden/<loss>.json: golden values from the reference libraries.

Run from the repository root (``make golden``), for every loss of the catalog or only the named ones::

    .venv/bin/python -m tests.kernels.catalog.golden [LOSS ...]

Needs the ``reference`` extra (torch 2.13.0 CPU, Keras 3 with the torch backend, SciPy, MONAI,
scikit-image, pytorch-msssim) besides the ``dev`` one; the tests that read the files need only numpy.
What each loss's cases are (reference, inputs, combos, shapes) is its :class:`Golden` declaration in
``tests/kernels/catalog/<family>.py``; this module only runs them.

How the values are made
-----------------------
* Inputs are drawn from a generator seeded by the case's name (so every case is
  reproducible on its own), then rounded to the case's ``dtype``; the stored inputs are
  exactly representable in that dtype (float32 inputs are written in their shortest
  float32 form).
* The reference runs in float64 on those rounded inputs, with the constants the kernel
  uses in that dtype: float params are rounded to the dtype and the probability clip is
  ``[eps, 1 - eps]`` as computed in the dtype (float32: ``[f32(eps), 1 - f32(eps)]``,
  i.e. ``1 - 1.19e-7`` for the default eps). So a float32 golden is the exact value of
  the reference at float32 inputs, and the test measures only the kernel's own
  float32 error. Exception: where the reference is a Keras function that clips
  probabilities (``categorical_crossentropy``, ``sparse_categorical_crossentropy``),
  float32 cases run Keras natively in float32, because Keras's clip bounds are set in
  the tensor's dtype and cannot be reproduced in float64.
* The reference's per-element output (reduction ``'none'``) is reduced with the API
  conventions (API.md, "Conventions"): ``per_sample`` = mean over the non-batch axes
  (class-wise losses are summed over the last axis by the reference first);
  ``mean`` = sum(w*l)/sum(w) (for ``sparse_cross_entropy``: sum_n w_n sum_i e_ni /
  sum_n w_n sum_i m_ni, with m = the class weight of the label, 0 where ignored, which
  is torch's weighted mean); ``sum`` = sum(w*l); ``none`` = per_sample.
* Gradients come from torch autograd on the returned loss; for ``none`` of
  ``per_sample.sum()`` (samples are independent, so that is each sample's own loss).
  ``none`` is generated without sample weights only: the service rejects weights with
  reduction ``none``.
* Losses with other inputs than predictions/targets (pairs, triplets, GAN batches) declare
  their differentiable inputs and fixed shapes (``run_general_case``); each differentiable
  input is a float64 leaf of the reference's autograd graph. Batch-level losses (one value for
  the whole batch) have per_sample = [loss] and no weighted results.
* Where no installable library has the loss (TF-Addons, TF-GAN: they need TensorFlow), the
  reference is an independent float64 torch implementation of the library's formula, and the
  case's reference text says so.
* Each case lists the cross-checks made against other references (e.g. torch's own
  ``'mean'`` reduction, Keras's label smoothing); the script fails if one disagrees.
"""

from __future__ import annotations

import json
import os
import sys
import zlib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from tests.kernels.catalog import CATALOG
from tests.kernels.catalog.base import Golden
from tests.kernels.catalog.reference import KERAS_EPS, Ctx, Tensor, Tensors, keras, monai, scipy, skimage, torch

TESTS = Path(__file__).resolve().parents[2]
ROOT = TESTS.parent
OUT = TESTS / "golden"
SEED = 20_250_101
DTYPES = ("float32", "float64")
REDUCTIONS = (("mean", False), ("mean", True), ("sum", False), ("sum", True), ("none", False))
GENERATED_BY = "scripts/make_golden.py (make golden)"
"""What the files say made them: the generator's name when the committed files were last regenerated
(kept so that regenerating them is byte-identical; change it with the next change of their values)."""


def library_version(name: str) -> str:
    """The version a golden file records for one of a declaration's ``versions``."""
    libraries = ("pytorch-msssim", "pytorch-metric-learning", "segmentation-models-pytorch", "torchvision")
    if name in (*libraries, "scoringrules", "properscoring"):
        return version(name)
    module = {"scipy": scipy, "monai": monai, "scikit-image": skimage}[name]
    return str(module.__version__)


def concrete_params(params: dict[str, Any], shape: tuple[int, ...], rng: np.random.Generator) -> dict[str, Any]:
    """'per_class' placeholders become one value per class (last axis); 'per_class_with_zero'
    the same with a zero first class; 'per_channel' one per kept channel of a channel-first input
    (axis 1, less channel 0 with ``include_background: false``); 'per_class_unit' one value in [0, 1]
    per class, 0 and 1 included (quantiles)."""
    out = {}
    for key, value in params.items():
        if value == "per_channel":
            kept = (shape[1] if len(shape) > 1 else 1) - (0 if params.get("include_background", True) else 1)
            out[key] = [round(float(v), 3) for v in rng.uniform(0.2, 3.0, kept)]
        elif value == "per_class_unit":
            out[key] = [round(float(v), 3) for v in rng.uniform(0.0, 1.0, shape[-1])]
            out[key][:2] = [0.0, 1.0][: shape[-1]]
        elif value in ("per_class", "per_class_with_zero"):
            out[key] = [round(float(v), 3) for v in rng.uniform(0.2, 3.0, shape[-1])]
            if value == "per_class_with_zero":
                out[key][0] = 0.0
        else:
            out[key] = value
    return out


def compact(array: np.ndarray, dtype: str, exact: bool) -> Any:
    """Inputs (exact): float32 values in their shortest float32 form. Results: float64
    repr for float64 cases, 12 significant digits for float32 cases (tolerance 1e-5)."""
    if array.dtype.kind == "i":
        return array.tolist()
    if exact and dtype == "float32":
        return np.vectorize(lambda v: float(str(np.float32(v))), otypes=[float])(array).tolist()
    if dtype == "float32":
        return np.vectorize(lambda v: float(f"{v:.12g}"), otypes=[float])(array).tolist()
    return array.tolist()


def reduce(e: Tensor, m: Tensor | None, w: Tensor | None, reduction: str) -> Tensor:
    n = e.shape[0]
    per_sample = e.double().reshape(n, -1).mean(1)
    if reduction == "none":
        return per_sample
    weights = torch.ones(n, dtype=torch.float64) if w is None else w
    total = (weights * per_sample).sum()
    if reduction == "sum":
        return total
    if m is None:
        return total / weights.sum()
    return total / (weights * m.double().reshape(n, -1).mean(1)).sum()


def reduce_ctc(e: Tensor, m: Tensor | None, w: Tensor | None, reduction: str) -> Tensor:
    """torch's CTC mean: each sample's loss divided by m = max(target length, 1), then the weighted mean."""
    if reduction != "mean":
        return reduce(e, None, w, reduction)
    assert m is not None
    weights = torch.ones(e.shape[0], dtype=torch.float64) if w is None else w
    return (weights * e.double() / m.double()).sum() / weights.sum()


REDUCERS = {"api": reduce, "ctc": reduce_ctc}


def case_id(params_spec: dict[str, Any], kind: str, shape_name: str, dtype: str) -> str:
    """A case's id in its golden file (``tests/kernels/test_golden.py`` checks the files hold the declared cases)."""
    param_text = ",".join(f"{k}={str(v).lower()}" for k, v in params_spec.items()) or "defaults"
    return f"{param_text}/{kind}/{shape_name}/{dtype}"


def case_rng(loss: str, params_spec: dict[str, Any], kind: str, shape_name: str) -> np.random.Generator:
    """The case's generator, seeded by its name: the same data for both dtypes."""
    base = f"{loss}/{json.dumps(params_spec, sort_keys=True)}/{kind}/{shape_name}"
    return np.random.default_rng([SEED, zlib.crc32(base.encode())])


def run_case(
    loss: str,
    entry: Golden,
    params_spec: dict[str, Any],
    kind: str,
    shape_name: str,
    dtype: str,
    shape: tuple[int, ...],
) -> dict[str, Any]:
    """One case of a predictions/targets loss; a batch-level case (``entry.is_batch_level``: MONAI's batch) has
    per_sample = [loss] (its reference returns one row) and no weighted results."""
    batch_level = entry.is_batch_level(params_spec)
    reducer = REDUCERS[entry.reduce]
    base = f"{loss}/{json.dumps(params_spec, sort_keys=True)}/{kind}/{shape_name}"
    rng = case_rng(loss, params_spec, kind, shape_name)
    params = concrete_params(params_spec, shape, rng)
    raw = entry.data(kind, shape, rng, params)
    weights = rng.uniform(0.2, 2.0, shape[0])
    weights[1] = 0.0  # a zero-weight sample
    inputs: dict[str, np.ndarray] = {}
    for name, value in raw.items():
        inputs[name] = value if value.dtype.kind == "i" else np.asarray(value, dtype=dtype).astype(np.float64)
    weights = np.asarray(weights, dtype=dtype).astype(np.float64)

    checks: list[str] = []
    reference = entry.reference
    others = entry.also_differentiable  # differentiable inputs besides predictions
    native = {"float32": torch.float32, "float64": torch.float64}[dtype]

    def forward(ctx: Ctx) -> tuple[Tensor, Tensor | None, Tensor, Tensor, Tensors]:
        x64 = torch.tensor(inputs["predictions"], dtype=torch.float64, requires_grad=True)
        xn = torch.tensor(inputs["predictions"], dtype=native, requires_grad=True)
        tensors = {"predictions": x64, "predictions_native": xn}
        for name, value in inputs.items():
            if name != "predictions":
                tensors[name] = torch.tensor(
                    value, dtype=torch.int64 if value.dtype.kind == "i" else torch.float64, requires_grad=name in others
                )
        e, m = reference(tensors, ctx)
        return e, m, x64, xn, tensors

    # per_sample and the cross-checks, once
    ctx = Ctx(dtype, params, checks)
    e, m, _, _, _ = forward(ctx)
    per_sample = reducer(e, m, None, "none").detach().numpy()
    results = []
    for reduction, weighted in REDUCTIONS:
        if weighted and batch_level:
            continue
        e, m, x64, xn, tensors = forward(Ctx(dtype, params, []))
        w = torch.tensor(weights, dtype=torch.float64) if weighted else None
        value = reducer(e, m, w, reduction)
        target = value.sum() if reduction == "none" else value
        target.backward()
        grads = [g for g in (x64.grad, xn.grad) if g is not None]
        assert len(grads) == 1, "the reference must use exactly one of predictions / predictions_native"
        gradients = {"predictions": grads[0].double().numpy()}
        for name in others:
            other = tensors[name].grad
            assert other is not None, f"the reference must use {name}"
            gradients[name] = other.double().numpy()
        out = value.detach().numpy()
        for name, arr in (("loss", out), *gradients.items()):
            if not np.all(np.isfinite(arr)):
                raise AssertionError(f"{base} {dtype} {reduction}: reference {name} is not finite: {arr}")
        results.append(
            {
                "reduction": reduction,
                "weighted": weighted,
                "loss": compact(out, dtype, False),
                "gradients": {name: compact(grad, dtype, False) for name, grad in gradients.items()},
            }
        )
    return {
        "id": case_id(params_spec, kind, shape_name, dtype),
        "params": params,
        "dtype": dtype,
        "data": kind,
        "shape": list(inputs["predictions"].shape),
        "reference": entry.describe(params),
        "checks": sorted(set(checks)),
        "inputs": {name: compact(value, dtype, True) for name, value in inputs.items()},
        "weights": compact(weights, dtype, True),
        "per_sample": compact(per_sample, dtype, False),
        "results": results,
    }


def run_general_case(
    loss: str,
    entry: Golden,
    params_spec: dict[str, Any],
    kind: str,
    shape_name: str,
    dtype: str,
    shape: tuple[int, ...],
) -> dict[str, Any]:
    """As run_case, for losses declared with fixed shapes and any differentiable inputs
    (``entry.differentiable``), each a float64 leaf the reference's autograd differentiates. Batch-level
    losses (``entry.batch_level``: one value for the whole batch) have no sample weights."""
    base = f"{loss}/{json.dumps(params_spec, sort_keys=True)}/{kind}/{shape_name}"
    rng = case_rng(loss, params_spec, kind, shape_name)
    params = concrete_params(params_spec, shape, rng)
    raw = entry.data(kind, shape, rng, params)
    batch_level = entry.is_batch_level(params_spec)
    inputs = {
        name: value if value.dtype.kind == "i" else np.asarray(value, dtype=dtype).astype(np.float64)
        for name, value in raw.items()
    }
    first = next(iter(inputs.values()))
    weights = None
    if not batch_level:
        weights = np.asarray(rng.uniform(0.2, 2.0, first.shape[0]), dtype=dtype).astype(np.float64)
        weights[1] = 0.0  # a zero-weight sample
    differentiable = entry.differentiable or ()
    reference = entry.reference

    def forward(ctx: Ctx) -> tuple[Tensor, Tensor | None, Tensors]:
        tensors = {
            name: torch.tensor(
                value,
                dtype=torch.int64 if value.dtype.kind == "i" else torch.float64,
                requires_grad=name in differentiable,
            )
            for name, value in inputs.items()
        }
        e, m = reference(tensors, ctx)
        return e, m, tensors

    checks: list[str] = []
    e, m, _ = forward(Ctx(dtype, params, checks))
    per_sample = reduce(e, m, None, "none").detach().numpy()
    results = []
    for reduction, weighted in REDUCTIONS:
        if weighted and batch_level:
            continue
        e, m, tensors = forward(Ctx(dtype, params, []))
        w = torch.tensor(weights, dtype=torch.float64) if weighted else None
        value = reduce(e, m, w, reduction)
        (value.sum() if reduction == "none" else value).backward()
        gradients = {}
        for name in differentiable:
            grad = tensors[name].grad
            array = np.zeros_like(inputs[name]) if grad is None else grad.numpy()
            if not np.all(np.isfinite(array)):
                raise AssertionError(f"{base} {dtype} {reduction}: reference gradient wrt {name} is not finite")
            gradients[name] = compact(array, dtype, False)
        out = value.detach().numpy()
        if not np.all(np.isfinite(out)):
            raise AssertionError(f"{base} {dtype} {reduction}: reference loss is not finite: {out}")
        results.append(
            {"reduction": reduction, "weighted": weighted, "loss": compact(out, dtype, False), "gradients": gradients}
        )
    return {
        "id": case_id(params_spec, kind, shape_name, dtype),
        "params": params,
        "dtype": dtype,
        "data": kind,
        "shape": list(first.shape),
        "reference": entry.describe(params),
        "checks": sorted(set(checks)),
        "inputs": {name: compact(value, dtype, True) for name, value in inputs.items()},
        "weights": None if weights is None else compact(weights, dtype, True),
        "per_sample": compact(per_sample, dtype, False),
        "results": results,
    }


def case_ids(entry: Golden) -> list[str]:
    """The ids of the cases a declaration makes, in the file's order."""
    return [case_id(params_spec, kind, name, dtype) for params_spec, kind, name, _ in entry.cases() for dtype in DTYPES]


def document(loss: str, entry: Golden) -> dict[str, Any]:
    """The golden file of one loss."""
    run = run_case if entry.differentiable is None else run_general_case
    cases = [
        run(loss, entry, params_spec, kind, name, dtype, shape)
        for params_spec, kind, name, shape in entry.cases()
        for dtype in DTYPES
    ]
    versions = {"torch": torch.__version__, "keras": keras.__version__, "keras_backend": keras.backend.backend()}
    versions.update({name: library_version(name) for name in entry.versions})
    return {
        "loss": loss,
        "generated_by": GENERATED_BY,
        "seed": SEED,
        "reference_versions": versions,
        "conventions": entry.conventions,
        "cases": cases,
    }


def main(names: list[str]) -> None:
    """Regenerate every golden file, or only those of the named losses."""
    goldens = {name: entry.golden for name, entry in CATALOG.items() if isinstance(entry.golden, Golden)}
    unknown = sorted(set(names) - set(goldens))
    if unknown:
        raise SystemExit(f"unknown losses (or losses without a Golden declaration): {unknown}")
    os.environ["KERAS_BACKEND"] = "torch"
    if keras.config.epsilon() != KERAS_EPS:
        raise SystemExit(f"keras.config.epsilon() is {keras.config.epsilon()}, the references assume {KERAS_EPS}")
    torch.manual_seed(SEED)
    OUT.mkdir(parents=True, exist_ok=True)
    total = 0
    for loss, entry in goldens.items():
        if names and loss not in names:
            continue
        path = OUT / f"{loss}.json"
        contents = document(loss, entry)
        path.write_text(json.dumps(contents, indent=None, separators=(",", ":")) + "\n")
        total += path.stat().st_size
        print(f"{path.relative_to(ROOT)}: {len(contents['cases'])} cases, {path.stat().st_size / 1024:.0f} KiB")
    print(f"total {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main(sys.argv[1:])
