"""The bench's floors and peer section, smoke-run in process: each floor computes the
service's loss (else its figure compares unlike work), and the peer section skips with
its reason when the peers are not installed. No server is started and nothing is timed
(``python -m bench --quick`` is the real run)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import numpy as np
import orjson
import pytest

from bench import __main__ as bench_main
from bench import layouts, peers
from bench.asgi import ASGIApp, lifespan, one_request
from bench.large_requests import json_request
from bench.minimal_graph import LOSS_RTOL, focal_graph, reference_loss
from bench.payload import PATH, small_request
from bench.peer_models import FocalGraph
from bench.servers import LARGE_JSON_PATH, FocalKernel, floor_app, large_floor_app, minimal_app
from bench.small_requests import disagreements
from kernels import REGISTRY
from kernels.runtime import Runtime, session_options
from kernels.spec import LossSpec
from service.arrays import decode_inputs
from tests.kernels.harness import on_demand


async def answer(app: ASGIApp, path: str, body: bytes) -> dict[str, float]:
    async with lifespan(app):
        status, data = await one_request(app, path, body)
    assert status == 200, data
    found: dict[str, float] = orjson.loads(data)
    return found


def service_loss(predictions: np.ndarray, targets: np.ndarray) -> float:
    spec = REGISTRY.get("focal")
    assert spec is not None
    runtime = Runtime(REGISTRY, "cpu", 1)
    result = runtime.evaluate(spec, {"predictions": predictions, "targets": targets}, dtype="float32", gradients=False)
    return float(result.loss)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_minimal_floor_computes_the_services_loss(seed: int) -> None:
    body = small_request(seed)
    document = orjson.loads(body)
    predictions = np.asarray(document["predictions"], np.float32)
    targets = np.asarray(document["targets"], np.float32)
    expected = service_loss(predictions, targets)
    minimal = asyncio.run(answer(minimal_app(1), PATH, body))["loss"]
    floor = asyncio.run(answer(floor_app(1), PATH, body))["loss"]
    assert minimal == pytest.approx(expected, rel=LOSS_RTOL)
    assert floor == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(reference_loss(predictions, targets), rel=1e-5)


def test_the_minimal_graph_is_small() -> None:
    assert 20 <= len(focal_graph().graph.node) <= 30


def test_a_minimal_floor_that_disagrees_is_not_measured() -> None:
    assert disagreements({"floor": 1.0, "service": 1.0, "minimal": 1.0 + 1e-7}) == {}
    assert set(disagreements({"floor": 1.0, "service": 1.0, "minimal": 1.0 + 1e-5})) == {"minimal"}
    assert set(disagreements({"floor": 1.0, "minimal": 1.0})) == {"minimal"}  # unchecked: no service loss


@pytest.mark.parametrize("shape", [(2_000, 10), (20_000,)], ids=["rows", "flat"])
def test_the_parse_floor_reads_both_layouts(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    predictions = rng.uniform(0.01, 0.99, shape).astype(np.float32)
    targets = rng.integers(0, 2, shape).astype(np.float32)
    request = json_request("json", predictions, targets)
    app = large_floor_app(1)
    first, again = (asyncio.run(answer(app, LARGE_JSON_PATH, request.body)) for _ in range(2))  # the parser is reused
    expected = float(FocalKernel(1).loss(predictions, targets))
    assert first["loss"] == again["loss"] == pytest.approx(expected, rel=1e-6)
    assert first["count"] == shape[0]
    assert expected == pytest.approx(service_loss(predictions, targets), rel=1e-5)


def test_peers_skip_with_their_reason_when_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOSSD_BENCH_PEERS", str(tmp_path))
    assert bench_main.main(["--only", "peers", "--quick"]) == 0
    out = capsys.readouterr().out
    for peer in peers.PEERS:
        reason = f"skipped: not installed (python -m bench --peers installs it into {tmp_path / peer.key})"
        assert re.search(rf"^{re.escape(peer.label)} +{re.escape(reason)}", out, re.M), out
    assert "FAILED" not in out


def test_the_peers_request_is_the_small_request() -> None:
    v2 = orjson.loads(peers.small_v2_request())
    small = orjson.loads(small_request())
    tensors = {t["name"]: t for t in v2["inputs"]}
    for name in ("predictions", "targets"):
        assert tensors[name]["shape"] == [32, 10]
        assert tensors[name]["data"] == np.asarray(small[name]).reshape(-1).tolist()


def test_the_peers_run_lossds_graph_as_lossd_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the peers load (exported here, read by bench/peer_models.py in their venvs):
    the same loss, and a session configured as lossd's."""
    peers.export_focal(tmp_path)
    monkeypatch.setenv("LOSSD_INTRA_OP_THREADS", "3")
    graph = FocalGraph(tmp_path)
    document = orjson.loads(small_request())
    predictions = np.asarray(document["predictions"], np.float32)
    targets = np.asarray(document["targets"], np.float32)
    assert graph.loss(predictions, targets) == pytest.approx(service_loss(predictions, targets), rel=1e-6)
    theirs, ours = graph.session.get_session_options(), session_options(3)
    for option in ("intra_op_num_threads", "inter_op_num_threads", "graph_optimization_level"):
        assert getattr(theirs, option) == getattr(ours, option), option
    entry = "session.intra_op.allow_spinning"
    assert theirs.get_session_config_entry(entry) == ours.get_session_config_entry(entry)
    assert graph.session.get_providers() == ["CPUExecutionProvider"]


@pytest.mark.parametrize("spec", [s for s in REGISTRY if layouts.layouts(s, 64_000)], ids=lambda s: s.name)
def test_every_layout_the_bench_times_is_a_valid_request_of_the_same_size(spec: LossSpec) -> None:
    """Each layout holds about the same number of elements and passes the service's checks, and
    the loss is finite: the section compares like work, not an error path."""
    found = layouts.layouts(spec, 64_000)
    assert len(found) >= 3
    rng = np.random.default_rng(0)
    for name, binding in found.items():
        arrays = layouts.make_inputs(spec, binding, rng)
        first = arrays[spec.inputs[0].name]
        assert 0.95 * 64_000 <= first.size <= 64_000, name
        batch = decode_inputs(spec, spec.params(), arrays, np.float32, 10**8)
        result = on_demand().compute(
            on_demand().kernel(spec, spec.params(), "float32", False),
            spec.params(),
            batch.arrays,
            np.ones(batch.count, np.float32),
            True,
        )
        assert np.isfinite(result.loss), name
