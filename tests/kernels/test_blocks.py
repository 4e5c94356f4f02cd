"""Large batches run in row blocks (kernels.blocks) give what one run gives.

Every loss with finite-difference inputs (tests/kernels/catalog), each of its params, every reduction with and without
weights, in float64: a row-wise loss split into one-row blocks (the thresholds lowered)
against one run; any other loss must run whole even then (its values are checked against
references by the golden and gradient tests).
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pytest

from kernels import REGISTRY, blocks
from tests.kernels.catalog import CATALOG, GRADIENT_CASES
from tests.kernels.harness import evaluate, runtime
from tests.kernels.test_gradients import CONFIGS

NOT_SPLIT = {info.name: info.whole for info in CATALOG.values() if info.whole is not None}
"""The losses that must never run in blocks, and why (declared in tests/kernels/catalog)."""


def blockable(loss: str, params: dict[str, Any]) -> bool:
    spec = REGISTRY.get(loss)
    assert spec is not None
    return runtime().kernel(spec, spec.params(**params), "float64", True).model is not None


def count_blocks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Blocks.run counted: one entry per blocked call, the number of blocks it ran."""
    calls: list[int] = []
    original = blocks.Blocks.run

    def counting(self: blocks.Blocks, session: object, run: blocks.Run, *args: object) -> list[np.ndarray]:
        calls.append(0)

        def counted(s: object, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
            calls[-1] += 1
            return run(s, feed)

        return original(self, session, counted, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(blocks.Blocks, "run", counting)
    return calls


@pytest.mark.parametrize("loss", sorted(GRADIENT_CASES))
def test_blocks_equal_one_run(loss: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Row-wise losses, forced into one-row blocks, give what one run gives; the others
    (NOT_SPLIT) run whole even when blocks are forced."""
    case, spec = GRADIENT_CASES[loss], REGISTRY.get(loss)
    assert spec is not None
    calls = count_blocks(monkeypatch)
    rng = np.random.default_rng(zlib.crc32(loss.encode()))
    for params in case.params:
        arrays = case.inputs(rng, params)
        rows = next(iter(arrays.values())).shape[0]
        assert rows >= 2, "one-row blocks of a one-row batch are one run"
        batch_level = spec.is_batch_level(spec.params(**params))  # e.g. MONAI's batch=True: one value, whole
        split_expected = loss not in NOT_SPLIT and not batch_level
        assert blockable(loss, params) == split_expected, f"{loss} {params}"
        for reduction, weighted in CONFIGS:
            weights = rng.uniform(0.2, 3.0, rows) if weighted and not batch_level else None
            where = f"{loss} {params} {reduction} weighted={weighted}"
            monkeypatch.setattr(blocks, "MIN_ELEMENTS", 1 << 62)
            whole = evaluate(loss, arrays, params, reduction=reduction, weights=weights)
            assert calls == [], where
            monkeypatch.setattr(blocks, "MIN_ELEMENTS", 0)
            monkeypatch.setattr(blocks, "BLOCK_ELEMENTS", 1)
            split = evaluate(loss, arrays, params, reduction=reduction, weights=weights)
            if not split_expected:
                assert calls == [], f"{where}: run in blocks ({NOT_SPLIT.get(loss, 'batch-level')})"
                continue
            assert calls == [rows], f"{where}: expected one block per row, got {calls}"
            calls.clear()
            np.testing.assert_allclose(split.loss, whole.loss, rtol=1e-12, atol=1e-15, err_msg=where)
            np.testing.assert_allclose(split.per_sample, whole.per_sample, rtol=1e-12, atol=1e-15, err_msg=where)
            assert split.gradients.keys() == whole.gradients.keys() == set(spec.differentiable), where
            for name, gradient in whole.gradients.items():
                np.testing.assert_allclose(split.gradients[name], gradient, rtol=1e-12, atol=1e-15, err_msg=where)


def test_row_wise_losses_are_split_and_the_others_are_not() -> None:
    split = {loss for loss in GRADIENT_CASES if blockable(loss, GRADIENT_CASES[loss].params[0])}
    assert split == set(GRADIENT_CASES) - set(NOT_SPLIT)
    assert {"mse", "focal", "cross_entropy", "binary_cross_entropy", "triplet", "dice"} <= split


def test_small_batches_run_whole() -> None:
    p = np.zeros((200_000, 10), np.float32)
    arrays, weights = {"predictions": p, "targets": p}, np.ones(200_000, np.float32)
    assert blocks.Blocks.worth_it(arrays, weights, True)  # 2M + 2M elements
    small = {name: a[:150_000] for name, a in arrays.items()}  # 1.5M + 1.5M: cheap graphs lose in blocks
    assert not blocks.Blocks.worth_it(small, weights[:150_000], True)
    assert not blocks.Blocks.worth_it(arrays, np.zeros(200_000, np.float32), True)  # mean of nothing: one call


def test_a_large_batch_runs_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """1,000 rows of 10 elements in blocks of 100 elements: 100 runs of 10 rows each."""
    rows: list[int] = []
    original = blocks.Blocks.run

    def counting(self: blocks.Blocks, session: object, run: blocks.Run, *args: object) -> list[np.ndarray]:
        def counted(s: object, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
            rows.append(len(feed["weights"]))
            return run(s, feed)

        return original(self, session, counted, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(blocks.Blocks, "run", counting)
    monkeypatch.setattr(blocks, "MIN_ELEMENTS", 0)
    monkeypatch.setattr(blocks, "BLOCK_ELEMENTS", 100)
    rng = np.random.default_rng(0)
    p, y = rng.uniform(0.05, 0.95, (1000, 10)), rng.integers(0, 2, (1000, 10)).astype(float)
    result = evaluate("focal", {"predictions": p, "targets": y})
    assert rows == [10] * 100
    monkeypatch.setattr(blocks, "MIN_ELEMENTS", 1 << 62)
    np.testing.assert_allclose(result.loss, evaluate("focal", {"predictions": p, "targets": y}).loss, rtol=1e-12)
