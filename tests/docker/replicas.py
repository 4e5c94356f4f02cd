"""The pieces of the replicas test (tests/docker/test_replicas.py): lossd containers, HAProxy
and Prometheus on this host, with the committed configurations of deploy/haproxy and
deploy/prometheus, and what each of them counted."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.multiprocess import MultiProcessCollector

from tests.docker.engine import REPO, docker, inspect, logs
from tests.docker.readme_commands import replica_run
from tests.server import free_port

HAPROXY_CONFIG = REPO / "deploy" / "haproxy" / "haproxy.cfg"
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
START_TIMEOUT = 300.0  # three containers at once, on a machine shared with others
NAMES = ("lossd-1", "lossd-2", "lossd-3")
"""The replicas' server names in haproxy.cfg, in the order of LOSSD_REPLICA_1..3."""


def wait_for(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.2) -> float:
    """Poll ``check`` until it holds; the seconds it took (AssertionError naming ``what``)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - started


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.TransportError:
        return False


@dataclass
class Replica:
    name: str
    """Its server name in haproxy.cfg."""
    container: str
    port: int
    tmp: Path
    """The host directory that is its /tmp, where its metric files are (they outlive it)."""

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def served(self) -> int:
        """Compute requests it counted in lossd_requests_total, read from its metric files
        (prometheus_client's multiprocess files, mapped into its memory: what they hold is
        everything it counted, also after a kill -9)."""
        files = [str(path) for path in self.tmp.glob("lossd-metrics-*/counter_*.db")]
        merged = MultiProcessCollector.merge(files)  # type: ignore[no-untyped-call]
        total = sum(s.value for family in merged for s in family.samples if s.name == "lossd_requests_total")
        return int(total)

    def state(self) -> Any:
        return inspect(self.container)["State"]

    def finished(self) -> float:
        """When it exited (epoch seconds; Docker writes nanoseconds, Python reads micro)."""
        moment = self.state()["FinishedAt"]
        head, _, fraction = moment.rstrip("Z").partition(".")
        return datetime.fromisoformat(f"{head}.{(fraction + '000000')[:6]}+00:00").timestamp()


@contextmanager
def replicas(image: str, database_url: str, directory: Path) -> Iterator[list[Replica]]:
    """Three containers of ``image`` on free ports, sharing ``database_url``, once each is
    ready; removed afterwards, whatever happened."""
    started: list[Replica] = []
    environment = {**os.environ, "LOSSD_DATABASE_URL": database_url}
    try:
        for name in NAMES:
            tmp = directory / name
            tmp.mkdir()
            tmp.chmod(0o1777)  # the server runs as uid 10001
            replica = Replica(name, f"{directory.name}-{name}", free_port(), tmp)
            # The README's command, with a host directory for /tmp instead of a tmpfs: the
            # replica killed with -9 leaves its metric files there for the count below.
            command = replica_run(replica.container, replica.port, image, str(tmp))
            result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=environment, check=False)
            assert result.returncode == 0, f"{' '.join(command)}:\n{result.stderr[-4000:]}"
            started.append(replica)
        for replica in started:
            url = f"http://{replica.address}/v2/health/ready"

            def up(replica: Replica = replica, url: str = url) -> bool:
                assert replica.state()["Running"], f"{replica.name} exited:\n{logs(replica.container)[-4000:]}"
                return answers(url)

            wait_for(f"{replica.name} ready", up, START_TIMEOUT, 0.5)
        yield started
    finally:
        if started:
            subprocess.run(
                ["docker", "rm", "-f", *(r.container for r in started)], capture_output=True, timeout=120, check=False
            )


@contextmanager
def process(command: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A host process in its own session, writing to ``log``; stopped (SIGTERM, then
    SIGKILL) afterwards."""
    with log.open("wb") as output:
        child = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True
        )
        try:
            yield child
        finally:
            if child.poll() is None:
                child.terminate()
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


@dataclass
class HAProxy:
    url: str
    stats: str
    log: Path

    def taken_out(self, name: str) -> list[str]:
        """Why HAProxy took that server out, as it logged it (e.g. "Layer7 wrong status,
        code: 503": its readiness; "Layer4 connection problem": it no longer listens)."""
        lines = self.log.read_text().splitlines()
        return [line.split("reason: ", 1)[1] for line in lines if line.startswith(f"Server lossd/{name} is DOWN")]

    def servers(self) -> dict[str, dict[str, str]]:
        """The backend's servers in HAProxy's own statistics (CSV), by name."""
        text = httpx.get(f"{self.stats}/stats;csv", timeout=5.0).text
        header, *rows = text.lstrip("# ").splitlines()
        fields = header.split(",")
        found = [dict(zip(fields, row.split(","), strict=False)) for row in rows if row]
        return {row["svname"]: row for row in found if row["pxname"] == "lossd" and row["svname"] in NAMES}

    def status(self, name: str) -> str:
        return self.servers()[name]["status"]


@contextmanager
def haproxy(replicas: list[Replica], directory: Path) -> Iterator[HAProxy]:
    """deploy/haproxy/haproxy.cfg as committed, its addresses from the environment, once
    every replica is UP in it."""
    port, stats = free_port(), free_port()
    env = {"LOSSD_LB_BIND": f"127.0.0.1:{port}", "LOSSD_LB_STATS": f"127.0.0.1:{stats}"}
    env |= {f"LOSSD_REPLICA_{i}": r.address for i, r in enumerate(replicas, 1)}
    log = directory / "haproxy.log"
    # -db: in the foreground, so that it is this process that stops.
    with process(["haproxy", "-db", "-f", str(HAPROXY_CONFIG)], log, env) as child:
        balancer = HAProxy(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{stats}", log)

        def all_up() -> bool:
            assert child.poll() is None, f"haproxy exited:\n{log.read_text()[-4000:]}"
            try:
                return all(row["status"] == "UP" for row in balancer.servers().values())
            except httpx.TransportError:
                return False

        wait_for("every replica UP in HAProxy", all_up, 30)
        yield balancer


@dataclass
class Prometheus:
    url: str

    def query(self, expression: str) -> list[Any]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expression}, timeout=10.0)
        body = response.json()
        assert body["status"] == "success", body
        result: list[Any] = body["data"]["result"]
        return result

    def by_instance(self, expression: str) -> dict[str, int]:
        return {r["metric"]["instance"]: int(float(r["value"][1])) for r in self.query(expression)}

    def targets_up(self) -> int:
        """Targets scraped successfully (0 while Prometheus is starting: it answers 503)."""
        response = httpx.get(f"{self.url}/api/v1/targets", timeout=10.0)
        if response.status_code != 200:
            return 0
        return sum(t["health"] == "up" for t in response.json()["data"]["activeTargets"])


@contextmanager
def prometheus(replicas: list[Replica], directory: Path) -> Iterator[Prometheus]:
    """deploy/prometheus/prometheus.yml as committed (with the alert rules beside it), the
    replicas in the lossd-targets.json it reads, once it scrapes all three."""
    config = directory / "prometheus"
    config.mkdir()
    for path in PROMETHEUS_DIR.iterdir():
        shutil.copy(path, config / path.name)
    targets = ", ".join(f'"{r.address}"' for r in replicas)
    (config / "lossd-targets.json").write_text(f'[{{"targets": [{targets}]}}]\n')
    port = free_port()
    command = [
        "prometheus",
        f"--config.file={config / 'prometheus.yml'}",
        f"--storage.tsdb.path={directory / 'prometheus-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    log = directory / "prometheus.log"
    with process(command, log) as child:
        server = Prometheus(f"http://127.0.0.1:{port}")

        def scraping() -> bool:
            assert child.poll() is None, f"prometheus exited:\n{log.read_text()[-4000:]}"
            try:
                return server.targets_up() == len(replicas)
            except httpx.TransportError:
                return False

        wait_for("Prometheus scraping every replica", scraping, 60, 0.5)
        yield server


def stop(replica: Replica, signal: str) -> None:
    docker("kill", "-s", signal, replica.container)
