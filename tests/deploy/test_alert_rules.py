"""deploy/prometheus/lossd-alerts.yaml: valid for promtool, its tests pass, and every metric
its rules use is one a real server exposes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.server import running_server
from tests.service.test_metrics import samples

README = Path(__file__).parents[2] / "README.md"
RULES_DIR = README.parent / "deploy" / "prometheus"
RULES, RULE_TESTS = RULES_DIR / "lossd-alerts.yaml", RULES_DIR / "lossd-alerts.test.yaml"
SCRAPER_METRICS = {"up"}
"""Series Prometheus itself makes for each target."""
LABELS = re.compile(r"\{[^}]*\}|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
NAME = re.compile(r"\b([A-Za-z_:][A-Za-z0-9_:]*)\b(?!\s*\()")  # not a function call
OPERATORS = {"and", "or", "unless", "bool", "offset"}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool is not installed (Debian's prometheus package; scripts/system-deps.sh): rules NOT checked"
        print(f"\n*** SKIPPED: {reason}", file=sys.stderr)
        pytest.skip(reason)
    return found


def rules() -> list[dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def metrics_used() -> set[str]:
    """The metric names in the rules' expressions: matchers and grouping labels left out."""
    names = {name for rule in rules() for name in NAME.findall(LABELS.sub(" ", str(rule["expr"])))}
    return names - OPERATORS


@pytest.mark.parametrize("command", [["check", "rules", RULES.name], ["test", "rules", RULE_TESTS.name]])
def test_promtool_accepts_the_rules_and_their_tests_pass(command: list[str]) -> None:
    result = subprocess.run([promtool(), *command], cwd=RULES_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_readmes_promtool_commands_work_from_the_repository_root() -> None:
    blocks = re.findall(r"```bash\n([^`]*?)```", README.read_text())
    (block,) = [b for b in blocks if b.startswith("promtool ")]
    commands = block.strip().splitlines()
    assert len(commands) == 2
    for command in commands:
        argv = [promtool(), *command.split()[1:]]
        result = subprocess.run(argv, cwd=README.parent, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "SUCCESS" in result.stdout + result.stderr, command


def test_every_rule_has_a_runbook_and_is_tested() -> None:
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    for rule in rules():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict) and len(annotations.get("runbook", "")) > 80, rule["alert"]
        assert rule["alert"] in tested, f"{rule['alert']} has no promtool test case"


def test_the_rules_use_only_metrics_a_real_server_exposes(tmp_path: Path) -> None:
    used = metrics_used()
    assert {"lossd_monitor_alert", "lossd_monitor_drift", "lossd_monitor_drift_limit", "lossd_ready"} <= used
    env = {"LOSSD_DATA_DIR": str(tmp_path / "data"), "LOSSD_GRPC_PORT": "0"}
    with running_server(env, timeout=180) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        # A request of each kind the rules count, and a monitor with a judged window.
        assert client.post("/loss/mse", json={"predictions": [1.0], "targets": [0.0]}).status_code == 200
        monitor = {"name": "rules", "loss": "mse", "window_seconds": 60, "baseline": {"windows": 1}}
        assert client.post("/monitors", json=monitor).status_code == 201
        start = time.time() // 60 * 60 - 120
        for i in range(2):
            body = {"predictions": [1.0, 2.0 + i], "targets": [0.0, 0.0], "timestamp": start + 60 * i}
            assert client.post("/monitors/rules/observations", json=body).status_code == 200
        exposed = {name for name, _ in samples(client.get("/metrics").text)}
    missing = used - SCRAPER_METRICS - exposed
    assert not missing, f"the rules use metrics /metrics does not expose: {sorted(missing)}"
