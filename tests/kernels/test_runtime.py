"""Provider selection and session options (the CUDA path is tested without a GPU)."""

import pytest

from kernels import REGISTRY
from kernels.runtime import CPU, CUDA, ProviderUnavailable, Runtime, all_keys, select_providers, session_options


def test_cpu_is_always_available() -> None:
    assert select_providers("cpu") == [CPU]


def test_auto_prefers_cuda_when_onnxruntime_offers_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("onnxruntime.get_available_providers", lambda: [CUDA, CPU])
    assert select_providers("auto") == [CUDA, CPU]
    monkeypatch.setattr("onnxruntime.get_available_providers", lambda: [CPU])
    assert select_providers("auto") == [CPU]


def test_cuda_without_cuda_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("onnxruntime.get_available_providers", lambda: [CPU])
    with pytest.raises(ProviderUnavailable, match=r"install the gpu extra"):
        select_providers("cuda")


def test_cuda_that_cannot_start_fails_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    # onnxruntime-gpu on a machine without a GPU lists CUDA but falls back to CPU when
    # a session is created: LOSSD_PROVIDER=cuda must refuse to start rather than run on CPU.
    monkeypatch.setattr("onnxruntime.get_available_providers", lambda: [CUDA, CPU])
    first = next(all_keys(REGISTRY))
    monkeypatch.setattr("kernels.runtime.all_keys", lambda specs, resources: iter([first]))
    with (
        pytest.raises(ProviderUnavailable, match="could not start CUDA"),
        pytest.warns(UserWarning, match="not in available provider"),
    ):
        Runtime(REGISTRY, provider="cuda")


def test_session_options_do_not_spin() -> None:
    options = session_options(intra_op_threads=2)
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
