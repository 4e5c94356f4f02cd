"""gRPC through a server's life: every uvicorn worker serves it (SO_REUSEPORT), and on
SIGTERM ServerReady and the health service turn not-ready at once while calls are still
answered for LOSSD_DRAIN_SECONDS; then the server stops gracefully (exit status 0) and the
port refuses calls (UNAVAILABLE)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.grpc import grpc_predict_v2_pb2 as pb
from service.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.server import free_port, running_server

DRAIN = 4.0
CALLS = 30
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
"""A connection of the client's own (grpc shares one between channels to the same address)."""
pytestmark = pytest.mark.server


def mse(client: triton.InferenceServerClient) -> float:
    inputs = [triton.InferInput(name, [2], "FP32") for name in ("predictions", "targets")]
    inputs[0].set_data_from_numpy(np.array([0.5, 1.5], np.float32))
    inputs[1].set_data_from_numpy(np.array([1.0, 1.0], np.float32))
    return float(client.infer("mse", inputs).as_numpy("loss").reshape(()))


def serving(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        status: int = answer.status
        return status


@pytest.mark.parametrize("workers", [1, 2])
def test_every_worker_serves_and_sigterm_drains(workers: int, tmp_path: Path) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = {
        "LOSSD_PROVIDER": "cpu",
        "LOSSD_WORKERS": str(workers),
        "LOSSD_GRPC_PORT": str(port),
        "LOSSD_DRAIN_SECONDS": str(DRAIN),
    }
    log = tmp_path / "server.log"
    with running_server(env, log=log) as server:
        # /health answers once one worker is up; the other may still be starting its gRPC server.
        deadline = time.monotonic() + 60
        while log.read_text().count("Application startup complete.") < workers:  # after the lifespan starts gRPC
            assert time.monotonic() < deadline, f"not every worker serves gRPC:\n{log.read_text()[-2000:]}"
            time.sleep(0.1)
        # Each new connection lands on one worker (the kernel picks; each worker counts its
        # own statistics): one worker has counted every call, two have shared them.
        counts = []
        for _ in range(CALLS):
            with grpc.insecure_channel(address, options=OWN_CONNECTION) as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
                request = pb.ModelInferRequest(model_name="mse")
                for name, value in (("predictions", 0.5), ("targets", 1.0)):
                    request.inputs.add(name=name, datatype="FP32", shape=[1]).contents.fp32_contents.append(value)
                assert np.frombuffer(stub.ModelInfer(request, timeout=10).raw_output_contents[0], np.float32) == 0.25
                stats = stub.ModelStatistics(pb.ModelStatisticsRequest(name="mse"), timeout=10)
                counts.append(stats.model_stats[0].inference_count)
        assert (max(counts) == CALLS) == (workers == 1), counts
        assert serving(address) == health_pb2.HealthCheckResponse.SERVING
        os.kill(server.pid, signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.5)
        ready, served = [], []
        while time.monotonic() - signalled < DRAIN - 1.0:
            with triton.InferenceServerClient(address) as client:  # a fresh connection each time
                ready.append(client.is_server_ready())
                served.append(mse(client))
            assert serving(address) == health_pb2.HealthCheckResponse.NOT_SERVING
            time.sleep(0.2)
        assert ready and not any(ready), ready
        assert set(served) == {0.25}
        returncode = server.wait(timeout=DRAIN + 60)
        stopped = time.monotonic() - signalled
    assert returncode == 0, log.read_text()
    assert stopped >= DRAIN - 0.5, f"stopped {stopped:.1f} s after SIGTERM, before the {DRAIN} s drain"
    with triton.InferenceServerClient(address) as client, pytest.raises(Exception, match="UNAVAILABLE"):
        client.is_server_live()
