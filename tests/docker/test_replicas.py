"""Three replicas for real, as Kubernetes relies on them: three lossd containers (the image
the suite builds, `--network host`, distinct ports) sharing one PostgreSQL, behind HAProxy
(round robin, health checks on `/v2/health/ready`), scraped by Prometheus; both run on this
host from the committed deploy/haproxy/haproxy.cfg and deploy/prometheus/prometheus.yml.

A bounded load (a few clients, a fixed number of requests each, compute requests and
monitor observations mixed) goes through HAProxy twice:

1. one replica gets SIGTERM mid-load: readiness turns 503, HAProxy takes it out for that
   (its log says why), it keeps serving through the 5-second drain, exits with status 0,
   and not one request fails. (HAProxy retries a connection that a replica refuses, so a
   replica without a drain fails no request here either: it leaves HAProxy by refusing
   connections, and its last counts are never scraped, which the checks below catch. A
   Kubernetes Service does not retry: there the drain is what keeps requests from failing.)
2. another is killed with -9 mid-load: only requests in flight on it fail (at most one per
   client, each started before the kill and ended after it), HAProxy marks it DOWN and the
   rest of the load is answered.

The counts are checked exactly, each against an independent one:

- the monitor: every acknowledged observation is in the database, once (each has a
  1-second window of its own); the only others are observations whose answer was lost in
  the kill -9, committed before the replica died;
- Prometheus: after phase 1, `sum(last_over_time(lossd_requests_total[1h]))` (last_over_time:
  a stopped target's series are stale, not gone) equals the compute requests sent. That is
  exact because a replica's last counts reach Prometheus during its drain: it scrapes every
  second, the drain lasts 5, and HAProxy stops sending within one. A replica killed with -9
  has no such last scrape: what it counted after its last one never reaches Prometheus. Its
  metric files do outlive it (its /tmp is a host directory here), so that tail is read from
  them, and Prometheus plus the tail equals what the three replicas counted, which equals
  the compute requests answered plus those the killed replica counted but whose answer it
  never sent (at most the failures).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.docker.load import EPOCH, MONITOR, SAMPLES, Load, Outcome, answered, failures
from tests.docker.replicas import Prometheus, haproxy, prometheus, replicas, stop, wait_for
from tests.service.monitors.postgres import binaries, postgres_server

pytestmark = pytest.mark.docker

CLIENTS, PER_CLIENT, OBSERVE_EVERY, PAUSE = 4, 120, 4, 0.01
"""Per phase: 4 clients x 120 requests, every 4th an observation, 10 ms apart."""
TRIGGER = 120
"""The replica is stopped once this many requests of the phase have finished."""
DRAIN_SECONDS = 5  # LOSSD_DRAIN_SECONDS' default: the README's replicas do not set it
TOTAL = "sum(last_over_time(lossd_requests_total[1h]))"
BY_INSTANCE = "sum by (instance) (last_over_time(lossd_requests_total[1h]))"


@pytest.fixture
def directory() -> Iterator[Path]:
    """Short-named (container names derive from it), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="lossd-replicas-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def required() -> Path:
    """PostgreSQL's binaries, after checking HAProxy and Prometheus are there (Debian
    packages that scripts/system-deps.sh installs)."""
    missing = [tool for tool in ("haproxy", "prometheus") if shutil.which(tool) is None]
    bin_dir = binaries()
    if bin_dir is None:
        missing.append("postgresql")
    if missing:
        pytest.skip(f"REPLICAS TEST NOT RUN: {', '.join(missing)} not installed (scripts/system-deps.sh)")
    assert bin_dir is not None
    return bin_dir


def counted_everywhere(server: Prometheus, expected: dict[str, int]) -> None:
    """Wait until Prometheus' last value of each of these replicas is what it counted."""
    wait_for(
        f"Prometheus' counts {expected}",
        lambda: {k: v for k, v in server.by_instance(BY_INSTANCE).items() if k in expected} == expected,
        20,
        0.5,
    )


def monitor_windows(url: str) -> dict[int, int]:
    """The monitor's windows (RFC 3339 starts): their sample counts by observation number."""
    windows = httpx.get(f"{url}/monitors/{MONITOR}/windows", timeout=30.0).json()["windows"]
    return {int(datetime.fromisoformat(w["start"]).timestamp()) - EPOCH: w["count"] for w in windows}


def check_monitor(url: str, outcomes: list[Outcome]) -> int:
    """Every acknowledged observation is in the database once; the others there are among
    those whose answer was lost. The number of those."""
    acknowledged = {o.sequence for o in outcomes if o.kind == "observe" and o.ok}
    unanswered = {o.sequence for o in outcomes if o.kind == "observe" and not o.ok}
    windows = monitor_windows(url)
    assert {n: windows.get(n) for n in acknowledged} == dict.fromkeys(acknowledged, SAMPLES)
    committed = set(windows) - acknowledged
    assert committed <= unanswered, f"observations in the database that were never sent: {committed - unanswered}"
    totals = httpx.get(f"{url}/monitors/{MONITOR}", timeout=30.0).json()["totals"]
    assert totals["count"] == SAMPLES * (len(acknowledged) + len(committed)), totals
    return len(committed)


def test_three_replicas_behind_haproxy(image: str, directory: Path) -> None:
    bin_dir = required()
    with ExitStack() as stack:
        database = stack.enter_context(postgres_server(bin_dir))
        servers = stack.enter_context(replicas(image, database, directory))
        balancer = stack.enter_context(haproxy(servers, directory))
        metrics = stack.enter_context(prometheus(servers, directory))
        first, second, third = servers
        created = httpx.post(
            f"{balancer.url}/monitors", json={"name": MONITOR, "loss": "mse", "window_seconds": 1}, timeout=30.0
        )
        assert created.status_code == 201, created.text

        # 1. SIGTERM mid-load: the drain.
        at_sigterm: list[float] = []  # what it had counted, and when

        def terminate() -> None:
            at_sigterm.extend((first.served(), time.time()))
            stop(first, "TERM")

        phase1 = Load(balancer.url, CLIENTS, PER_CLIENT, OBSERVE_EVERY, PAUSE).run(TRIGGER, terminate)
        assert failures(phase1) == [], failures(phase1)
        assert balancer.status(first.name) == "DOWN"
        wait_for(f"{first.name} stopped", lambda: not first.state()["Running"], 30, 0.5)
        assert first.state()["ExitCode"] == 0, first.state()
        # It left HAProxy by its readiness while still serving, then served the whole drain:
        # without one it would leave by refusing connections, which HAProxy retries elsewhere
        # (so no request would fail here either), and its last counts would never be scraped.
        assert [reason.startswith("Layer7 wrong status, code: 503") for reason in balancer.taken_out(first.name)] == [
            True
        ], balancer.taken_out(first.name)
        drained = first.finished() - at_sigterm[1]
        assert drained >= DRAIN_SECONDS - 0.5, f"stopped {drained:.1f} s after SIGTERM"
        after_sigterm = int(first.served() - at_sigterm[0])
        sent1 = answered(phase1, "compute")
        counted_everywhere(metrics, {r.address: r.served() for r in servers})
        prometheus_total1 = int(float(metrics.query(TOTAL)[0]["value"][1]))
        assert prometheus_total1 == sent1
        assert check_monitor(balancer.url, phase1) == 0

        # 2. kill -9 mid-load: only its requests in flight fail.
        killed: list[float] = []  # when `docker kill` was called and when it returned

        def kill() -> None:
            killed.append(time.monotonic())
            stop(second, "KILL")
            killed.append(time.monotonic())

        phase2 = Load(balancer.url, CLIENTS, PER_CLIENT, OBSERVE_EVERY, PAUSE).run(TRIGGER, kill)
        failed = failures(phase2)
        assert len(failed) <= CLIENTS, failed  # each client has one request in flight at most
        in_flight = [o for o in failed if o.started <= killed[1] and o.ended >= killed[0]]
        assert in_flight == failed, f"failed, not in flight at the kill {killed}: {failed}"
        assert balancer.status(second.name) == "DOWN"
        assert [reason.startswith("Layer4 connection problem") for reason in balancer.taken_out(second.name)] == [True]
        assert second.state()["ExitCode"] == 137, second.state()
        after_kill = [o for o in phase2 if o.started > killed[1]]
        assert after_kill and all(o.ok for o in after_kill), "HAProxy did not route around the killed replica"

        outcomes = phase1 + phase2
        alive = {r.address: r.served() for r in (first, third)}
        counted_everywhere(metrics, alive)
        scraped = metrics.by_instance(BY_INSTANCE)
        tail = second.served() - scraped[second.address]
        assert tail >= 0
        prometheus_total = int(float(metrics.query(TOTAL)[0]["value"][1]))
        served = sum(r.served() for r in servers)
        assert prometheus_total + tail == served
        undelivered = served - answered(outcomes, "compute")
        assert 0 <= undelivered <= sum(o.kind == "compute" for o in failed)
        committed_unanswered = check_monitor(balancer.url, outcomes)
        compute, observations = (sum(o.kind == kind for o in outcomes) for kind in ("compute", "observe"))
        figures = [
            f"{len(outcomes)} requests sent through HAProxy ({len(phase1)} + {len(phase2)}: {compute} compute, "
            f"{observations} observations of {SAMPLES} samples)",
            f"failed at SIGTERM: {len(failures(phase1))}",
            f"failed at kill -9: {len(failed)} ({', '.join(str(o.status or o.error) for o in failed) or 'none'})",
            f"the SIGTERM'd replica left HAProxy on its 503 and exited {drained:.1f} s after the signal, having "
            f"counted {after_sigterm} requests since",
            f"compute requests counted per replica: { ({r.name: r.served() for r in servers}) }",
            f"Prometheus' sum after phase 1: {prometheus_total1} = {sent1} sent",
            f"at the end: {prometheus_total} + {tail} counted by the killed replica after its last scrape = "
            f"{served} counted = {answered(outcomes, 'compute')} answered + {undelivered} counted, not delivered",
            f"monitor: {answered(outcomes, 'observe')} observations acknowledged, {committed_unanswered} "
            "committed whose answer was lost",
        ]
        print("\nreplicas: " + "; ".join(figures))
