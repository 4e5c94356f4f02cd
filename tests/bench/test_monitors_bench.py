"""``python -m bench.monitors`` smoke-run with tiny sizes against a real server: every request
it times answers 200 (the bench raises otherwise), so a change of the monitor API that the
bench no longer follows fails here, and each figure it prints is there. Nothing is timed."""

from __future__ import annotations

import json

import pytest

from bench import monitors


def printed(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result: dict[str, object] = json.loads(last)
    return result


def test_the_ingest_bench_runs_with_segments_and_ids(capsys: pytest.CaptureFixture[str]) -> None:
    monitors.main(["--batch", "20", "--rounds", "5"])
    result = printed(capsys)
    assert result["target_ratio"] == 1.5 and result["target_labels_ratio"] == 1.5
    with_ids = result["with_ids"]
    assert isinstance(with_ids, dict)
    for key in ("labels_ratio", "labels_alone_ratio", "predictions_ratio", "fixed_median_ms"):
        assert with_ids[key] > 0, key


def test_the_scale_bench_reads_what_it_wrote(capsys: pytest.CaptureFixture[str]) -> None:
    monitors.main(["--scale", "--batches", "1440", "--samples", "5", "--reads", "3", "--batch", "20", "--rounds", "5"])
    result = printed(capsys)
    assert result["batches"] == 1440
    for key in ("windows_ms", "monitor_ms", "metrics_ms", "page_ms", "database_mib", "ratio"):
        value = result[key]
        assert isinstance(value, float) and value > 0, key
