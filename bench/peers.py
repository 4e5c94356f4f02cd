"""Section 4: lossd against other inference servers serving the same graph over V2 JSON.

KServe's ``ModelServer`` and MLServer (with a custom runtime: there is no mlserver-onnx)
serve lossd's exported forward focal graph (float32, default params) as the model
``focal``; lossd serves its own ``/v2/models/focal/infer``. All get the same 32x10 V2 JSON
request from the same load generator, one worker each, round-robin; the figure is lossd's
req/s over each peer's, one ratio per repeat.

Each peer lives in a venv of its own (``bench/.peers/<name>``, or ``$LOSSD_BENCH_PEERS``):
its dependencies are not lossd's. A peer that is not installed is skipped with the reason,
unless installation is asked for (``python -m bench --peers``); so is one that fails to
install or to start.
"""

from __future__ import annotations

import http.client
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

from bench.load import Generator, LoadResult, Target
from bench.process import HOST, ServerProcess, free_port
from bench.servers import FocalKernel, focal_key
from bench.small_requests import last_line, server_env
from bench.stats import Spread
from bench.table import number, render, spread
from kernels import REGISTRY
from kernels.feeds import param_feed
from kernels.graph import MEAN, WEIGHTS, build_model

V2_PATH = "/v2/models/focal/infer"
READY_PATH = "/v2/models/focal/ready"
MODELS = Path(__file__).with_name("peer_models.py")
INSTALL_TIMEOUT = 900.0
"""Seconds one peer's ``pip install`` may take (about 500 MB of wheels each)."""
START_TIMEOUT = 120.0


@dataclass(frozen=True)
class Peer:
    key: str
    label: str
    requirements: tuple[str, ...]
    module: str
    """Imported to tell that the venv is installed."""


PEERS = (
    Peer("kserve", "KServe 0.21.0 ModelServer", ("kserve==0.21.0",), "kserve"),
    Peer("mlserver", "MLServer 1.7.1, onnxruntime runtime", ("mlserver==1.7.1",), "mlserver"),
)


def peers_root() -> Path:
    return Path(os.environ.get("LOSSD_BENCH_PEERS") or Path(__file__).with_name(".peers"))


def venv_python(root: Path, peer: Peer) -> Path:
    return root / peer.key / "bin" / "python"


def installed(root: Path, peer: Peer) -> bool:
    python = venv_python(root, peer)
    if not python.exists():
        return False
    check = [str(python), "-c", f"import {peer.module}, onnxruntime"]
    return subprocess.run(check, capture_output=True, timeout=120).returncode == 0


def install(root: Path, peer: Peer, timeout: float = INSTALL_TIMEOUT) -> str | None:
    """Install ``peer`` into its venv; the reason in one line when it cannot be."""
    venv = root / peer.key
    # The same onnxruntime as lossd's: the peers must run the graph with the same kernels.
    requirements = [*peer.requirements, f"onnxruntime=={ort.__version__}"]
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True)
        pip = [str(venv_python(root, peer)), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        done = subprocess.run([*pip, *requirements], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"pip install {' '.join(requirements)} took over {timeout:.0f} s"
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"cannot create the venv {venv}: {last_line(str(exc))}"
    if done.returncode != 0:
        return f"pip install {' '.join(requirements)} failed: {last_line(done.stderr or done.stdout)}"
    return None if installed(root, peer) else f"{peer.module} does not import after installing"


def export_focal(directory: Path) -> None:
    """lossd's focal graph and the constant feeds ``Runtime.run`` gives it, for the peers."""
    key = focal_key()
    spec = REGISTRY.get(key.loss)
    assert spec is not None
    (directory / "focal.onnx").write_bytes(build_model(spec, key).SerializeToString())
    kernel = FocalKernel(1)
    constants: dict[str, Any] = {}
    for name in kernel.param_names:
        value = param_feed(getattr(kernel.params, name), False, np.float32)
        constants[name] = {"value": value.tolist(), "dtype": str(value.dtype), "shape": list(value.shape)}
    constants[MEAN] = {"value": True, "dtype": "bool", "shape": []}
    (directory / "feeds.json").write_bytes(orjson.dumps({"constants": constants, "weights": WEIGHTS}))
    shutil.copy(MODELS, directory / MODELS.name)


def mlserver_settings(directory: Path, port: int) -> None:
    """One process (inference in the server process, as lossd runs it), no metrics server,
    no access log or gzip: what lossd serves without."""
    ports = [free_port(), free_port()]
    settings = {
        "host": HOST,
        "http_port": port,
        "grpc_port": ports[0],
        "metrics_port": ports[1],
        "metrics_endpoint": None,
        "parallel_workers": 0,
        "debug": False,
        "gzip_enabled": False,
        "load_models_at_startup": True,
    }
    (directory / "settings.json").write_bytes(orjson.dumps(settings))
    model = {"name": "focal", "implementation": "peer_models.MLServerFocal", "parameters": {"uri": str(directory)}}
    (directory / "model-settings.json").write_bytes(orjson.dumps(model))


def v2_request(predictions: np.ndarray, targets: np.ndarray) -> bytes:
    inputs = [
        {"name": name, "shape": list(array.shape), "datatype": "FP32", "data": array.reshape(-1).tolist()}
        for name, array in (("predictions", predictions), ("targets", targets))
    ]
    return orjson.dumps({"inputs": inputs, "outputs": [{"name": "loss"}]})


def small_v2_request() -> bytes:
    """The small-request section's 32x10 focal numbers, as V2 JSON tensors."""
    from bench.payload import small_request

    document = orjson.loads(small_request())
    return v2_request(np.asarray(document["predictions"]), np.asarray(document["targets"]))


def wait_model_ready(proc: ServerProcess, timeout: float = START_TIMEOUT) -> None:
    """A peer answers before its model is loaded (404 or 400 then): wait for the model."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.process is not None
        if proc.process.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.process.returncode}:\n{proc.log_tail()}")
        connection = http.client.HTTPConnection(HOST, proc.port, timeout=5)
        try:
            connection.request("GET", READY_PATH)
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name}: model not ready after {timeout:.0f} s:\n{proc.log_tail()}")


@dataclass(frozen=True)
class Settings:
    seconds: float
    warmup: float
    repeats: int
    threads: int
    install: bool


@dataclass(frozen=True)
class Measured:
    key: str
    label: str
    runs: list[LoadResult]
    loss: float | None = None
    skipped: str | None = None

    @property
    def rps(self) -> Spread:
        return Spread.of([r.rps for r in self.runs])

    def json(self) -> dict[str, Any]:
        if self.skipped is not None:
            return {"label": self.label, "skipped": self.skipped}
        return {
            "label": self.label,
            "rps": self.rps.json(),
            "loss": self.loss,
            "errors": sum(r.errors for r in self.runs),
        }


def argv(root: Path, peer: Peer, directory: Path) -> list[str]:
    if peer.key == "kserve":
        return [str(venv_python(root, peer)), str(directory / MODELS.name), "kserve", str(directory)]
    return [str(venv_python(root, peer).with_name("mlserver")), "start", str(directory)]


def run(generator: Generator, settings: Settings) -> list[Measured]:
    root = peers_root()
    skipped: dict[str, str] = {}
    for peer in PEERS:
        if installed(root, peer):
            continue
        if not settings.install:
            skipped[peer.key] = f"not installed (python -m bench --peers installs it into {root / peer.key})"
        elif (reason := install(root, peer)) is not None:
            skipped[peer.key] = reason
    labels = {"lossd": "lossd serve, /v2/models/focal/infer", **{p.key: p.label for p in PEERS}}
    if all(peer.key in skipped for peer in PEERS):
        skipped["lossd"] = "not measured: no peer to compare with"
        return [Measured(key, labels[key], [], skipped=skipped[key]) for key in ("lossd", *(p.key for p in PEERS))]
    body = small_v2_request()
    env = server_env(settings.threads)
    with tempfile.TemporaryDirectory(prefix="lossd-bench-peers-") as tmp, ExitStack() as stack:
        work = Path(tmp)
        export_focal(work)
        procs = {
            "lossd": ServerProcess("lossd", [sys.executable, "-m", "service.cli", "serve"], env, work / "lossd.log")
        }
        for peer in PEERS:
            if peer.key in skipped:
                continue
            directory = work / peer.key
            directory.mkdir()
            for name in ("focal.onnx", "feeds.json", MODELS.name):
                shutil.copy(work / name, directory / name)
            proc = ServerProcess(
                peer.key, argv(root, peer, directory), {**env, "PYTHONPATH": str(directory)}, work / f"{peer.key}.log"
            )
            if peer.key == "mlserver":
                mlserver_settings(directory, proc.port)
            procs[peer.key] = proc
        for proc in procs.values():
            stack.enter_context(proc)
        losses: dict[str, float] = {}
        for key, proc in procs.items():
            try:
                if key != "lossd":
                    wait_model_ready(proc)
                answer = proc.wait_ready(V2_PATH, body, timeout=START_TIMEOUT)
                losses[key] = float(answer["outputs"][0]["data"][0])
            except (RuntimeError, KeyError, IndexError, TypeError, ValueError) as exc:
                skipped[key] = f"did not start: {last_line(str(exc))}"
                proc.stop()
        reference = losses.get("lossd")
        for key, loss in losses.items():
            if reference is not None and not math.isclose(loss, reference, rel_tol=1e-5):
                skipped[key] = f"computes loss {loss!r}, lossd {reference!r}"
        live = [(key, proc) for key, proc in procs.items() if key not in skipped]
        runs: dict[str, list[LoadResult]] = {key: [] for key, _ in live}
        for _, proc in live:
            generator.run(Target(HOST, proc.port, V2_PATH, body), settings.warmup)
        for _ in range(settings.repeats):
            for key, proc in live:
                runs[key].append(generator.run(Target(HOST, proc.port, V2_PATH, body), settings.seconds))
    return [
        Measured(key, labels[key], runs.get(key, []), losses.get(key), skipped.get(key))
        for key in ("lossd", *(p.key for p in PEERS))
    ]


def over(lossd: Measured, peer: Measured) -> Spread:
    """lossd's req/s over the peer's, one ratio per round-robin repeat."""
    return Spread.of([a.rps / b.rps for a, b in zip(lossd.runs, peer.runs, strict=True)])


def report(results: list[Measured], generator: Generator, settings: Settings) -> str:
    lossd = results[0]
    headers = ["server", "req/s (min-max)", "lossd / server (per repeat)", "p50 ms", "p99 ms", "errors"]
    rows = []
    for m in results:
        if m.skipped is not None:
            rows.append([m.label, f"skipped: {m.skipped}", "", "", "", ""])
            continue
        ratio = ""
        if m is not lossd and lossd.skipped is None:
            r = over(lossd, m)
            ratio = f"{r.median:.2f}x ({r.low:.2f}-{r.high:.2f})"
        rows.append(
            [
                m.label,
                spread(m.rps),
                ratio,
                number(Spread.of([r.p50_ms for r in m.runs]).median),
                number(Spread.of([r.p99_ms for r in m.runs]).median),
                str(sum(r.errors for r in m.runs)),
            ]
        )
    title = (
        f"Peers: POST {V2_PATH}, 32x10 V2 JSON ({len(small_v2_request()) / 1000:.1f} KB), lossd's exported focal "
        f"graph, 1 worker each, ORT intra-op threads {settings.threads}\n"
        f"load: {generator.name}; {settings.repeats} x {settings.seconds:g} s per server after "
        f"{settings.warmup:g} s warm-up, round-robin; median (min-max)"
    )
    return "\n".join([title, "", render(headers, rows)])


def json(results: list[Measured], settings: Settings) -> dict[str, Any]:
    lossd = results[0]
    found: dict[str, Any] = {}
    for m in results:
        entry = m.json()
        if m is not lossd and m.skipped is None and lossd.skipped is None:
            entry["lossd_over_peer"] = over(lossd, m).json()
        found[m.key] = entry
    return {"path": V2_PATH, "seconds": settings.seconds, "repeats": settings.repeats, "servers": found}
