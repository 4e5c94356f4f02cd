"""``python -m bench.breakdown`` runs against the service's current internals and times the
service's own parse (simdjson into buffers), not a path requests never take. Nothing is
judged by its timing."""

from __future__ import annotations

import pytest

from bench import breakdown


def test_the_breakdown_runs_every_step(capsys: pytest.CaptureFixture[str]) -> None:
    assert breakdown.main(["--rounds", "1", "--calls", "3"]) == 0
    text = capsys.readouterr().out
    assert "n/a" not in text
    for step in ("parse_json (simdjson, arrays into buffers)", "session.run alone", "compute.evaluate"):
        assert step in text
