"""The README's Docker commands and replicas recipe, read rather than run (no engine
needed): what the suite runs for each README command, the recipe's addresses against the
committed HAProxy and Prometheus configurations, and those configurations checked by
HAProxy and promtool themselves where they are installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.docker import readme_commands
from tests.docker.readme_commands import readme_command
from tests.docker.replicas import HAPROXY_CONFIG, PROMETHEUS_DIR

DEFAULT = re.compile(r'"\$\{(LOSSD_[A-Z0-9_]+)-([^}]+)\}"')


@pytest.mark.parametrize(
    ("run_here", "expected"),
    [
        (
            readme_commands.build("lossd-test:x", "base:y", "/repo"),
            "docker build --network host --build-arg BASE=base:y -t lossd-test:x /repo",
        ),
        (
            readme_commands.build("lossd-test:x", None, "/repo"),
            "docker build --network host -t lossd-test:x /repo",
        ),
        (
            readme_commands.read_only_run("c", 9001, 9003, "v", "lossd-test:x"),
            "docker run -d --name c --read-only --tmpfs /tmp -v v:/var/lib/lossd --network host -e LOSSD_PORT=9001 "
            "-e LOSSD_GRPC_PORT=9003 lossd-test:x",
        ),
        (
            readme_commands.replica_run("r", 9002, "lossd-test:x", "/t"),
            "docker run -d --name r --network host --read-only -v /t:/tmp -e LOSSD_PORT=9002 -e LOSSD_GRPC_PORT=0 "
            "-e LOSSD_DATABASE_URL lossd-test:x",
        ),
    ],
)
def test_what_the_suite_runs_for_each_readme_command(run_here: list[str], expected: str) -> None:
    """Each README command with only these machines' changes: a README edit that the suite
    does not follow fails here before any engine is needed."""
    assert " ".join(run_here) == expected


def haproxy_defaults() -> dict[str, str]:
    return dict(DEFAULT.findall(HAPROXY_CONFIG.read_text()))


def test_the_recipe_addresses_are_the_configurations_defaults() -> None:
    """The replicas' ports of the README's loop, the targets it gives Prometheus and the
    servers of haproxy.cfg are the same three."""
    loop = readme_command(lambda t: t[:3] == ["for", "port", "in"], "loop over the replicas' ports")
    ports = loop[3 : loop.index("do;")] if "do;" in loop else loop[3:-1]
    replicas = [f"127.0.0.1:{port.rstrip(';')}" for port in ports]
    defaults = haproxy_defaults()
    assert [defaults[f"LOSSD_REPLICA_{i}"] for i in (1, 2, 3)] == replicas
    echo = readme_command(lambda t: t[0] == "echo" and "lossd-targets.json" in t[-1], "Prometheus targets")
    assert echo[1] == '[{"targets": [' + ", ".join(f'"{r}"' for r in replicas) + "]}]"
    haproxy = readme_command(lambda t: t[0] == "haproxy", "haproxy command")
    assert haproxy[1:3] == ["-f", "deploy/haproxy/haproxy.cfg"]
    text = readme_commands.README.read_text()
    for name in ("LOSSD_LB_BIND", "LOSSD_LB_STATS"):
        assert f"http://{defaults[name]}" in text, f"the README should say where {name} listens by default"


def test_haproxy_accepts_its_configuration() -> None:
    if shutil.which("haproxy") is None:
        pytest.skip("HAProxy is not installed (scripts/system-deps.sh): its configuration was not checked")
    result = subprocess.run(
        ["haproxy", "-c", "-f", str(HAPROXY_CONFIG)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_promtool_accepts_the_prometheus_configuration(tmp_path: Path) -> None:
    """As the README's recipe lays it out: a copy of deploy/prometheus with the targets beside it."""
    if shutil.which("promtool") is None:
        pytest.skip("promtool (Debian prometheus) is not installed: the Prometheus configuration was not checked")
    for path in PROMETHEUS_DIR.iterdir():
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "lossd-targets.json").write_text('[{"targets": ["127.0.0.1:8101"]}]\n')
    result = subprocess.run(
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr, result.stdout + result.stderr
