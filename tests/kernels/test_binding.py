"""The IO-binding path (kernels.binding), which the CUDA provider takes, gives exactly what
a plain run gives. Bound to the CPU device here, so it runs on machines without a GPU."""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import pytest

from kernels import REGISTRY
from kernels.graph import graph_shape
from tests.kernels.catalog import GRADIENT_CASES
from tests.kernels.harness import runtime


@pytest.mark.parametrize("loss", sorted(GRADIENT_CASES))
def test_bound_run_equals_plain_run(loss: str) -> None:
    spec = REGISTRY.get(loss)
    assert spec is not None
    params = spec.params(**GRADIENT_CASES[loss].params[0])
    natural = GRADIENT_CASES[loss].inputs(
        np.random.default_rng(zlib.crc32(loss.encode())), GRADIENT_CASES[loss].params[0]
    )
    arrays = {
        i.name: np.asarray(natural[i.name], np.int64 if i.integer else np.float64).reshape(
            graph_shape(i, np.shape(natural[i.name]))
        )
        for i in spec.inputs
    }
    rows = 1 if spec.batch_level else next(iter(arrays.values())).shape[0]
    weights = np.linspace(0.5, 2.0, rows)
    kernel = runtime().kernel(spec, params, "float64", True)
    assert kernel.device is None  # a CPU runtime runs plainly; CUDA kernels are bound
    names = ["loss", "per_sample", *(f"grad_{n}" for n in spec.differentiable)]
    plain = runtime().run(kernel, params, arrays, weights, True, names)
    bound = runtime().run(dataclasses.replace(kernel, device="cpu"), params, arrays, weights, True, names)
    assert len(bound) == len(plain)
    for name, b, p in zip(names, bound, plain, strict=True):
        np.testing.assert_array_equal(b, p, err_msg=f"{loss}: {name}")
