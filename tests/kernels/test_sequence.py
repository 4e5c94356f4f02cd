"""CTC beyond the golden values: a moderate size against an independent numpy forward-backward,
its speed, the Scan body's size, impossible alignments in process, and the card's curve."""

from __future__ import annotations

import math
import statistics
import time
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pytest

from kernels import REGISTRY
from kernels.graph import GraphKey, build_model
from kernels.sequence import PATH_MASS
from tests.kernels.harness import evaluate, runtime

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def numpy_ctc(lp: Floats, targets: Ints, frames: Ints, lengths: Ints, blank: int) -> tuple[Floats, Floats]:
    """Per-sample negative log-likelihood and posterior occupancy gamma (N, T, C) = -d nll / d lp,
    by the textbook forward-backward recursion (Graves et al. 2006) in float64 log space."""
    n_samples = lp.shape[0]
    nll = np.zeros(n_samples)
    gamma = np.zeros_like(lp)
    for n in range(n_samples):
        ext = [blank]
        for label in targets[n, : lengths[n]]:
            ext += [int(label), blank]
        k, t_n = len(ext), int(frames[n])
        skip = np.array([s >= 2 and ext[s] != ext[s - 2] for s in range(k)])
        alpha = np.full((t_n, k), -np.inf)
        beta = np.full((t_n, k), -np.inf)
        if t_n == 0:
            nll[n] = 0.0 if k == 1 else np.inf
            continue
        e = lp[n, :t_n][:, ext]
        alpha[0, :2] = e[0, :2]
        for t in range(1, t_n):
            prev = alpha[t - 1]
            terms = [prev, np.r_[-np.inf, prev][:k], np.where(skip, np.r_[-np.inf, -np.inf, prev][:k], -np.inf)]
            alpha[t] = np.logaddexp.reduce(terms, axis=0) + e[t]
        beta[t_n - 1, max(k - 2, 0) :] = e[t_n - 1, max(k - 2, 0) :]
        for t in range(t_n - 2, -1, -1):
            nxt = beta[t + 1]
            skip_next = np.r_[skip, False, False][2:]
            terms = [nxt, np.r_[nxt, -np.inf][1:], np.where(skip_next, np.r_[nxt, -np.inf, -np.inf][2:], -np.inf)]
            beta[t] = np.logaddexp.reduce(terms, axis=0) + e[t]
        ll = np.logaddexp.reduce(alpha[t_n - 1, max(k - 2, 0) :])
        nll[n] = -ll
        if np.isfinite(ll):
            post = np.exp(alpha + beta - e - ll)
            for s, c in enumerate(ext):
                gamma[n, :t_n, c] += post[:, s]
    return nll, gamma


def moderate(rng: np.random.Generator) -> dict[str, Any]:
    """N=16, T=50, C=20, S=10: targets with repeats, varied lengths."""
    n, t, c, s = 16, 50, 20, 10
    x = rng.normal(0.0, 2.0, (n, t, c))
    lp = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
    targets = rng.integers(1, c, (n, s))
    targets[:, 3] = targets[:, 2]  # a repeat in every target
    lengths = rng.integers(0, s + 1, n)
    frames = rng.integers(30, t + 1, n)
    return {"predictions": lp, "targets": targets, "input_lengths": frames, "target_lengths": lengths}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_moderate_size_matches_numpy_forward_backward(dtype: Literal["float32", "float64"]) -> None:
    rng = np.random.default_rng(3)
    inputs = moderate(rng)
    lp = np.asarray(inputs["predictions"], dtype=dtype).astype(np.float64)
    inputs["predictions"] = lp
    weights = rng.uniform(0.5, 2.0, 16)
    nll, gamma = numpy_ctc(lp, inputs["targets"], inputs["input_lengths"], inputs["target_lengths"], 0)
    got = evaluate("ctc", inputs, reduction="mean", weights=weights, dtype=dtype)
    coef = weights / np.maximum(inputs["target_lengths"], 1) / weights.sum()
    rtol = 1e-12 if dtype == "float64" else 1e-6
    np.testing.assert_allclose(got.per_sample, nll, rtol=rtol)
    np.testing.assert_allclose(got.loss, (coef * nll).sum(), rtol=rtol)
    np.testing.assert_allclose(
        got.gradients["predictions"], -gamma * coef[:, None, None], rtol=rtol, atol=1e-7 * coef.max()
    )
    # gamma is a distribution over classes at every frame that counts, and zero beyond
    frames = np.arange(50)[None, :] < inputs["input_lengths"][:, None]
    np.testing.assert_allclose(gamma.sum(axis=-1), frames.astype(float), atol=1e-12)


def test_moderate_size_is_fast() -> None:
    """One Scan over T = 50 steps: a few milliseconds with gradients, on a shared 2-core machine."""
    spec = REGISTRY.get("ctc")
    assert spec is not None
    inputs = moderate(np.random.default_rng(4))
    arrays = {k: np.asarray(v, dtype=np.float32) if k == "predictions" else v for k, v in inputs.items()}
    params = spec.params()
    kernel = runtime().kernel(spec, params, "float32", True)
    names = ["loss", "per_sample", "grad_predictions"]
    weights = np.ones(16, np.float32)
    timings = []
    for _ in range(25):
        start = time.perf_counter()
        runtime().run(kernel, params, arrays, weights, True, names)
        timings.append(time.perf_counter() - start)
    assert statistics.median(timings) < 0.05, f"median {statistics.median(timings) * 1e3:.1f} ms"


def test_scan_body_stays_small() -> None:
    """The per-step body runs T times: a handful of element-wise nodes on the (1, 2N, 2S+1) state."""
    spec = REGISTRY.get("ctc")
    assert spec is not None
    for variant in spec.variants:
        model = build_model(spec, GraphKey("ctc", variant, "float32", True))
        scans = [node for node in model.graph.node if node.op_type == "Scan"]
        assert len(scans) == 1
        (body,) = (a.g for a in scans[0].attribute if a.name == "body")
        assert len(body.node) <= 14, [n.op_type for n in body.node]
        assert len(body.input) == 2  # the state and one scan input: no per-step masks


def test_impossible_alignment_in_process() -> None:
    """Without zero_infinity an impossible sample's loss is inf (the service answers 422 before running
    it); its gradient is 0, as with zero_infinity, and the other samples are unaffected."""
    lp = np.log(np.full((2, 3, 3), 1.0 / 3.0))
    inputs = {
        "predictions": lp,
        "targets": np.array([[1, 1], [1, 2]]),
        "input_lengths": np.array([2, 3]),  # (1, 1) needs 3 frames
        "target_lengths": np.array([2, 2]),
    }
    plain = evaluate("ctc", inputs, reduction="none")
    zeroed = evaluate("ctc", inputs, {"zero_infinity": True}, reduction="none")
    assert np.isposinf(plain.per_sample[0]) and plain.per_sample[1] == pytest.approx(zeroed.per_sample[1])
    assert zeroed.per_sample[0] == 0.0
    for result in (plain, zeroed):
        np.testing.assert_array_equal(result.gradients["predictions"][0], 0.0)
        assert np.isfinite(result.gradients["predictions"]).all()


@pytest.mark.parametrize("log_p", [-700.0, -740.0, -746.0, -1004.0])
def test_a_forced_alignment_of_tiny_probability_is_exact(log_p: float) -> None:
    """An input just long enough for its target has one alignment, ending in the target's last label (the
    final blank state unreachable, -inf): the loss is -(sum of its log-probabilities), however small the
    probability. (onnxruntime's ReduceLogSumExp of (-inf, x) loses x below about -708 and gives -inf below
    -745: the loss was inexact there, then infinite.)"""
    lp = np.log(np.full((2, 4, 3), 1.0 / 3.0))
    lp[:, 1, 2] = log_p
    inputs = {
        "predictions": lp,
        "targets": np.array([[1, 2], [1, 2]]),
        "input_lengths": np.array([2, 4]),
        "target_lengths": np.array([2, 2]),
    }
    result = evaluate("ctc", inputs, reduction="none")
    expected, gamma = numpy_ctc(lp, inputs["targets"], inputs["input_lengths"], inputs["target_lengths"], 0)
    assert result.per_sample[0] == pytest.approx(math.log(3.0) - log_p, rel=1e-15)
    np.testing.assert_allclose(result.per_sample, expected, rtol=1e-12)
    np.testing.assert_allclose(result.gradients["predictions"], -gamma, atol=1e-12)


def test_curve_slope_is_the_kernel_gradient_along_it() -> None:
    """The card's curve: the loss falls as the alignment's frames gain probability, and its slope along
    x (the kernel's gradient projected on the curve's direction) matches finite differences."""
    x = PATH_MASS.sample(9)
    result = evaluate("ctc", PATH_MASS.inputs(x), reduction="none")
    slope = (result.gradients["predictions"] * PATH_MASS.direction(x)["predictions"]).sum(axis=(1, 2))
    h = 1e-6
    up = evaluate("ctc", PATH_MASS.inputs(x + h), reduction="none", gradients=False).per_sample
    down = evaluate("ctc", PATH_MASS.inputs(x - h), reduction="none", gradients=False).per_sample
    np.testing.assert_allclose(slope, (up - down) / (2 * h), rtol=1e-6)
    assert (np.diff(result.per_sample) < 0).all()
