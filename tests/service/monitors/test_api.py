"""The monitoring API on one app: create, list, inspect, delete; observations, late labels,
windows and their merging, quantiles, baselines and alerts, /metrics."""

import itertools
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.service.test_metrics import count

WINDOW = 60
T0 = 1_700_000_000 - 1_700_000_000 % WINDOW  # a window start
_names = itertools.count()


def new_monitor(client: TestClient, **fields: Any) -> str:
    name = f"m{next(_names)}"
    response = client.post("/monitors", json={"name": name, "loss": "mse", "window_seconds": WINDOW, **fields})
    assert response.status_code == 201, response.text
    return name


def observe(client: TestClient, name: str, values: list[float], timestamp: Any = None, **extra: Any) -> dict[str, Any]:
    """Record samples whose mse loss is ``values`` (predictions sqrt(v), targets 0)."""
    body: dict[str, Any] = {"predictions": [[float(np.sqrt(v))] for v in values], "targets": [[0.0]] * len(values)}
    if timestamp is not None:
        body["timestamp"] = timestamp
    response = client.post(f"/monitors/{name}/observations", json={**body, **extra})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def windows(client: TestClient, name: str, **query: Any) -> list[dict[str, Any]]:
    response = client.get(f"/monitors/{name}/windows", params=query)
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()["windows"]
    return result


def test_create_list_inspect_delete(client: TestClient) -> None:
    name = new_monitor(client, loss="smooth_mae", params={"delta": 0.5})  # an alias resolves
    created = client.get(f"/monitors/{name}").json()
    assert created["loss"] == "huber" and created["params"] == {"delta": 0.5} and created["window_seconds"] == WINDOW
    assert created["totals"] == {"count": 0, "mean": None, "std": None, "min": None, "max": None}
    assert created["alert"]["state"] == "pending"
    assert name in [m["name"] for m in client.get("/monitors").json()["monitors"]]
    body = {"predictions": [[0.0], [2.0]], "targets": [[0.0], [0.0]], "timestamp": T0}
    assert client.post(f"/monitors/{name}/observations", json=body).json() == {
        "accepted": 2,
        "loss": pytest.approx(0.4375),  # huber(2, delta 0.5) = 0.5 * (2 - 0.25), mean with 0
        "window": "2023-11-14T22:13:00Z",
    }
    totals = client.get(f"/monitors/{name}").json()["totals"]
    assert totals == {"count": 2, "mean": pytest.approx(0.4375), "std": pytest.approx(0.4375), "min": 0.0, "max": 0.875}
    assert client.delete(f"/monitors/{name}").status_code == 204
    assert client.get(f"/monitors/{name}").status_code == 404
    assert name not in [m["name"] for m in client.get("/monitors").json()["monitors"]]
    assert new_monitor(client)  # the name space is not exhausted by a delete


def test_missing_monitors_are_404(client: TestClient) -> None:
    body = {"predictions": [[1.0]], "targets": [[0.0]]}
    for response in (
        client.get("/monitors/nope"),
        client.delete("/monitors/nope"),
        client.get("/monitors/nope/windows"),
        client.post("/monitors/nope/observations", json=body),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["field"] == "name"


def test_a_taken_name_is_409(client: TestClient) -> None:
    name = new_monitor(client)
    response = client.post("/monitors", json={"name": name, "loss": "mae"})
    assert response.status_code == 409 and response.json()["field"] == "name"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "bad name", "loss": "mse"}, "name"),
        ({"name": "x", "loss": "msee"}, "loss"),
        ({"name": "x", "loss": "huber", "params": {"delta": -1}}, "params.delta"),
        ({"name": "x", "loss": "huber", "params": {"gamma": 1}}, "params.gamma"),
        ({"name": "x", "loss": "focal", "params": {"gamma": 1e308}}, "params.gamma"),  # monitors run in float32
        ({"name": "x", "loss": "mse", "window_seconds": 0}, "window_seconds"),
        ({"name": "x", "loss": "mse", "baseline": {"threshold": 0}}, "baseline.threshold"),
        ({"name": "x", "loss": "mse", "baseline": {"drift_threshold": 0}}, "baseline.drift_threshold"),
        ({"name": "x", "loss": "mse", "baseline": {"drift_threshold": 1.5}}, "baseline.drift_threshold"),
        ({"name": "x", "loss": "mse", "baseline": {"drift_threshold": "high"}}, "baseline.drift_threshold"),
        ({"name": "x", "loss": "mse", "colour": "red"}, "colour"),
        (
            {"name": "x", "loss": "mse", "baseline": {"reference": {"predictions": [[1.0]]}}},
            "baseline.reference.targets",
        ),
    ],
)
def test_bad_definitions_are_422_naming_the_field(client: TestClient, body: dict[str, Any], field: str) -> None:
    response = client.post("/monitors", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert client.get("/monitors/x").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"predictions": [[1.0]], "targets": [[0.0]], "timestamp": "yesterday"}, "timestamp"),
        ({"predictions": [[1.0]], "targets": [[0.0]], "timestamp": "2026-11-22T08:00:00"}, "timestamp"),
        ({"predictions": [[1.0]], "targets": [[0.0]], "timestamp": -5}, "timestamp"),
        ({"predictions": [[1.0]], "targets": [[0.0]], "reduction": "sum"}, "reduction"),
        ({"predictions": [[1.0]], "targets": [[0.0]], "params": {}}, "params"),
        ({"predictions": [[1.0], [2.0]], "targets": [[0.0]]}, "targets"),
        ({"predictions": [[1.0]]}, "targets"),
        ({"predictions": [[1.0]], "targets": [[0.0]], "weights": [-1.0]}, "weights"),
    ],
)
def test_bad_observations_are_422_and_record_nothing(client: TestClient, body: dict[str, Any], field: str) -> None:
    name = new_monitor(client)
    response = client.post(f"/monitors/{name}/observations", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert client.get(f"/monitors/{name}").json()["totals"]["count"] == 0


def test_malformed_json_is_400(client: TestClient) -> None:
    name = new_monitor(client)
    response = client.post(f"/monitors/{name}/observations", content=b"{", headers={"content-type": "application/json"})
    assert response.status_code == 400


def test_late_labels_land_in_their_own_window(client: TestClient) -> None:
    name = new_monitor(client)
    observe(client, name, [1.0, 1.0], timestamp=T0 + 5 * WINDOW)
    observe(client, name, [4.0], timestamp="2023-11-14T22:13:30Z")  # late: T0 + 30 s, as RFC 3339
    observe(client, name, [9.0], timestamp="2023-11-15T00:13:59.5+02:00")  # the same window, another offset
    observe(client, name, [2.0], timestamp=T0 + 5 * WINDOW + 59.9)
    got = windows(client, name)
    assert [(w["start"], w["end"], w["count"]) for w in got] == [
        ("2023-11-14T22:13:00Z", "2023-11-14T22:14:00Z", 2),
        ("2023-11-14T22:18:00Z", "2023-11-14T22:19:00Z", 3),
    ]
    assert got[0]["mean"] == pytest.approx(6.5) and got[0]["min"] == pytest.approx(4.0)
    assert got[1]["mean"] == pytest.approx(4.0 / 3) and got[1]["max"] == pytest.approx(2.0)


def test_without_a_timestamp_an_observation_is_now(client: TestClient) -> None:
    import time

    name = new_monitor(client)
    before = time.time()
    observe(client, name, [1.0])
    [window] = windows(client, name, since=before - WINDOW)
    assert window["count"] == 1


def test_windows_merge_into_coarser_steps_and_filter_by_time(client: TestClient) -> None:
    name = new_monitor(client)
    rng = np.random.default_rng(5)
    batches = {start: rng.gamma(2.0, 1.0 + start / WINDOW, 200) for start in range(0, 6 * WINDOW, WINDOW)}
    for start, values in batches.items():
        observe(client, name, values.tolist(), timestamp=T0 + start)
    step = 3 * WINDOW
    base = T0 - T0 % step
    merged = windows(client, name, step=step)
    for window in merged:
        start = int(np.datetime64(window["start"].rstrip("Z"), "s").astype(int))
        values = np.concatenate([v for s, v in batches.items() if start <= T0 + s < start + step])
        squared = np.float32(np.sqrt(values)).astype(np.float64) ** 2  # what the float32 kernel sees
        assert window["count"] == values.size
        assert window["mean"] == pytest.approx(squared.mean(), rel=1e-6)
        assert window["std"] == pytest.approx(squared.std(), rel=1e-5)
        assert window["max"] == pytest.approx(squared.max(), rel=1e-6)
        assert window["p90"] == pytest.approx(np.quantile(squared, 0.9), rel=0.01)
    assert sum(w["count"] for w in merged) == 1200 and {len(merged)} <= {2, 3} and base <= T0
    inside = windows(client, name, since=T0 + WINDOW, until=T0 + 3 * WINDOW)
    assert [w["count"] for w in inside] == [200, 200]
    bad = client.get(f"/monitors/{name}/windows", params={"step": 90})
    assert bad.status_code == 422 and bad.json()["field"] == "step"
    bad = client.get(f"/monitors/{name}/windows", params={"since": "soon"})
    assert bad.status_code == 422 and bad.json()["field"] == "since"


def test_window_quantiles_are_within_one_percent_of_numpy(client: TestClient) -> None:
    name = new_monitor(client)
    values = np.random.default_rng(6).lognormal(0.0, 1.0, 10_000)
    for batch in np.split(values, 10):
        observe(client, name, batch.tolist(), timestamp=T0)
    [window] = windows(client, name)
    sent = np.float32(np.sqrt(values)).astype(np.float64) ** 2
    for key, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        assert window[key] == pytest.approx(np.quantile(sent, q), rel=0.01), key


def test_a_window_above_the_first_windows_is_flagged(client: TestClient) -> None:
    name = new_monitor(client, baseline={"windows": 2, "threshold": 3.0})
    rng = np.random.default_rng(7)
    for i in range(2):
        observe(client, name, rng.uniform(0.5, 1.5, 100).tolist(), timestamp=T0 + i * WINDOW)
    assert client.get(f"/monitors/{name}").json()["alert"]["state"] == "ok"  # ready, nothing judged yet
    observe(client, name, rng.uniform(0.5, 1.5, 100).tolist(), timestamp=T0 + 2 * WINDOW)
    state = client.get(f"/monitors/{name}").json()
    assert state["baseline"]["ready"] and state["baseline"]["mean"] == pytest.approx(1.0, abs=0.1)
    assert state["alert"]["state"] == "ok"
    observe(client, name, rng.uniform(1.0, 2.0, 100).tolist(), timestamp=T0 + 3 * WINDOW)  # degraded
    state = client.get(f"/monitors/{name}").json()
    assert state["alert"] == {
        "state": "alert",
        "window": state["windows"][-1]["start"],
        "flagged_windows": 1,
        "drift_state": "drift",  # U(1, 2) against U(0.5, 1.5): half the mass moved
        "drift": pytest.approx(0.5, abs=0.08),
        "drift_limit": state["windows"][-1]["drift_limit"],
    }
    assert [w["alert"] for w in state["windows"]] == [None, None, False, True]
    assert [w["drift_alert"] for w in state["windows"]] == [None, None, False, True]
    assert state["windows"][-1]["mean"] > state["windows"][-1]["limit"] > state["baseline"]["mean"]


def test_a_wider_spread_at_the_same_mean_is_drift_not_alert(client: TestClient) -> None:
    name = new_monitor(client, baseline={"windows": 2, "drift_threshold": 0.2})
    rng = np.random.default_rng(3)
    for i in range(2):
        observe(client, name, rng.uniform(0.9, 1.1, 200).tolist(), timestamp=T0 + i * WINDOW)
    observe(client, name, [0.5, 1.5] * 100, timestamp=T0 + 2 * WINDOW)  # mean 1, half below 0.9
    state = client.get(f"/monitors/{name}").json()
    assert state["baseline"]["drift_threshold"] == 0.2
    assert state["alert"]["state"] == "ok" and state["alert"]["drift_state"] == "drift"
    assert state["alert"]["drift"] == pytest.approx(0.5, abs=0.01) and state["alert"]["drift_limit"] == 0.2
    last = windows(client, name)[-1]
    assert (last["alert"], last["drift_alert"], last["drift"]) == (False, True, state["alert"]["drift"])
    # Merged windows (a step of two) are compared from their merged sketches.
    observe(client, name, [0.5, 1.5] * 100, timestamp=T0 + 3 * WINDOW)
    coarse = windows(client, name, step=2 * WINDOW)
    judged = [w for w in coarse if w["drift"] is not None]
    assert judged and all(w["drift_alert"] for w in judged)
    assert count(client.get("/metrics").text, "lossd_monitor_drift", monitor=name) == pytest.approx(0.5, abs=0.01)
    html = page_of(client, name)
    section = html[html.index(f"<h2>{name} ") :]
    assert "distribution drift (KS 0.500, limit 0.200)" in section[: section.index("</div>")]


def test_a_reference_batch_is_the_baseline(client: TestClient) -> None:
    reference = {"predictions": [[1.0], [1.0], [1.0], [1.0]], "targets": [[0.0], [0.0], [0.0], [0.0]]}
    name = new_monitor(client, baseline={"reference": reference, "threshold": 2.0})
    state = client.get(f"/monitors/{name}").json()
    assert state["baseline"] == {
        "source": "reference",
        "windows": 3,
        "threshold": 2.0,
        "drift_threshold": 0.1,
        "ready": True,
        "count": 4,
        "mean": 1.0,
        "std": 0.0,
    }
    observe(client, name, [1.0, 1.0], timestamp=T0)
    assert client.get(f"/monitors/{name}").json()["alert"]["state"] == "ok"
    observe(client, name, [1.0, 1.5], timestamp=T0 + WINDOW)
    alert = client.get(f"/monitors/{name}").json()["alert"]
    assert alert["state"] == "alert"
    # Half of the window above the reference's one value, but two samples are within chance.
    assert alert["drift"] == pytest.approx(0.5) and alert["drift_limit"] > 0.5 and alert["drift_state"] == "ok"


def test_any_loss_of_the_registry_can_be_monitored(client: TestClient) -> None:
    focal = new_monitor(client, loss="sigmoid_focal", params={"gamma": 1.0, "from_logits": True})
    body = {"predictions": [[0.2, -1.3], [2.0, 0.1]], "targets": [[0, 1], [1, 0]], "weights": [1.0, 0.5]}
    expected = client.post("/loss/focal", json={**body, "params": {"gamma": 1.0, "from_logits": True}}).json()["loss"]
    assert client.post(f"/monitors/{focal}/observations", json=body).json()["loss"] == pytest.approx(expected)
    assert client.get(f"/monitors/{focal}").json()["totals"]["mean"] == pytest.approx(expected, rel=1e-6)
    gan = new_monitor(client, loss="wasserstein")  # one value per batch
    result = client.post(f"/monitors/{gan}/observations", json={"real_scores": [1.0, 2.0], "fake_scores": [0.5]})
    assert result.json()["accepted"] == 1 and result.json()["loss"] == pytest.approx(-1.0)


def test_a_named_composite_can_be_monitored(client: TestClient) -> None:
    name = new_monitor(client, loss="dice_bce")
    rng = np.random.default_rng(3)
    body = {
        "predictions": rng.uniform(0.05, 0.95, (3, 2, 4, 4)).tolist(),
        "targets": rng.integers(0, 2, (3, 2, 4, 4)).tolist(),
    }
    expected = client.post("/loss/dice_bce", json=body).json()["loss"]
    assert client.post(f"/monitors/{name}/observations", json=body).json()["loss"] == pytest.approx(expected)
    assert client.get(f"/monitors/{name}").json()["totals"]["count"] == 3


def test_metrics_show_each_monitor(client: TestClient) -> None:
    compute = {"loss": "mse", "protocol": "rest", "status": "200"}
    before = count(client.get("/metrics").text, "lossd_requests_total", **compute)
    name = new_monitor(client, baseline={"windows": 1})
    observe(client, name, [1.0, 3.0], timestamp=T0)
    observe(client, name, [5.0, 7.0, 9.0], timestamp=T0 + WINDOW)
    assert client.post("/loss/mse", json={"predictions": [[1.0]], "targets": [[0.0]]}).status_code == 200
    text = client.get("/metrics").text
    labels = {"monitor": name, "loss": "mse"}
    assert count(text, "lossd_monitor_observations_total", **labels) == 5
    assert count(text, "lossd_monitor_loss_sum_total", **labels) == pytest.approx(25.0)
    assert count(text, "lossd_monitor_window_mean", **labels) == pytest.approx(7.0)
    assert count(text, "lossd_monitor_window_p90", **labels) == pytest.approx(7.0, rel=0.01)  # DDSketch: rank 0.9*(n-1)
    assert count(text, "lossd_monitor_alert", **labels) == 1.0
    # The compute metrics are still there, and count the compute request alone: observations
    # of an mse monitor are not requests of /loss/mse.
    assert count(text, "lossd_requests_total", **compute) - before == 1


def test_segments_keep_windows_baselines_and_alerts_of_their_own(client: TestClient) -> None:
    name = new_monitor(client, segments=["model_version", "region"], baseline={"windows": 2, "threshold": 3.0})
    rng = np.random.default_rng(11)
    for i in range(4):
        for version in ("v1", "v2"):
            degraded = version == "v2" and i == 3
            values = rng.uniform(0.5, 1.5, 100) * (2.0 if degraded else 1.0)
            tags = {"model_version": version, "region": "eu"}
            observe(client, name, values.tolist(), timestamp=T0 + i * WINDOW, tags=tags)
    observe(client, name, [1.0], timestamp=T0, tags={"region": "us"})  # model_version left out: null
    segments = client.get(f"/monitors/{name}/segments").json()["segments"]
    by_tags = {(s["tags"]["model_version"], s["tags"]["region"]): s for s in segments}
    assert set(by_tags) == {("v1", "eu"), ("v2", "eu"), (None, "us")}
    assert by_tags["v1", "eu"]["count"] == by_tags["v2", "eu"]["count"] == 400 and by_tags[None, "us"]["count"] == 1
    assert by_tags["v1", "eu"]["alert"]["state"] == "ok" and by_tags[None, "us"]["alert"]["state"] == "pending"
    assert by_tags["v2", "eu"]["alert"] == {
        "state": "alert",
        "window": windows(client, name)[-1]["start"],
        "flagged_windows": 1,
        "drift_state": "drift",
        "drift": pytest.approx(0.75, abs=0.05),  # U(1, 3) against U(0.5, 1.5)
        "drift_limit": pytest.approx(0.2388, abs=1e-3),  # the critical value for 100 against 200 samples
    }
    assert by_tags["v1", "eu"]["alert"]["drift_state"] == "ok"
    assert by_tags["v1", "eu"]["mean"] == pytest.approx(1.0, abs=0.1)
    v2 = windows(client, name, tags="model_version:v2")
    assert [w["count"] for w in v2] == [100] * 4 and [w["alert"] for w in v2] == [None, None, False, True]
    assert [w["drift_alert"] for w in v2] == [None, None, False, True]
    assert v2[-1]["drift"] == by_tags["v2", "eu"]["alert"]["drift"]  # as stored, against the segment's baseline
    eu = windows(client, name, tags="region:eu")  # model_version merged over
    assert [w["count"] for w in eu] == [200] * 4
    both = windows(client, name, tags="model_version:v2,region:eu")
    assert [w["mean"] for w in both] == [w["mean"] for w in v2]
    merged = windows(client, name)
    assert [w["count"] for w in merged] == [201, 200, 200, 200]
    assert windows(client, name, tags="region:asia") == []
    assert sum(w["count"] for w in windows(client, name, tags="model_version:v1")) == 400
    text = client.get("/metrics").text
    labels = {"monitor": name, "loss": "mse"}
    assert count(text, "lossd_monitor_observations_total", **labels, model_version="v2", region="eu") == 400
    assert count(text, "lossd_monitor_observations_total", **labels, model_version="", region="us") == 1
    assert count(text, "lossd_monitor_observations_total", **labels) == 801  # the segments add up
    assert count(text, "lossd_monitor_alert", **labels, model_version="v2") == 1.0
    assert count(text, "lossd_monitor_alert", **labels, model_version="v1") == 0.0
    assert count(text, "lossd_monitor_drift", **labels, model_version="v2") == v2[-1]["drift"]
    assert count(text, "lossd_monitor_drift_limit", **labels, model_version="v2") == v2[-1]["drift_limit"]
    view = client.get(f"/monitors/{name}").json()
    assert view["segments"] == ["model_version", "region"] and view["totals"]["count"] == 801


@pytest.mark.parametrize(
    ("tags", "field"),
    [
        ({"colour": "red"}, "tags.colour"),
        ({"region": 3}, "tags.region"),
        ({"region": "x" * 201}, "tags.region"),
        (["region", "eu"], "tags"),
    ],
)
def test_undeclared_or_bad_tags_are_422_naming_the_field(client: TestClient, tags: Any, field: str) -> None:
    name = new_monitor(client, segments=["region"])
    body = {"predictions": [[1.0]], "targets": [[0.0]], "tags": tags}
    response = client.post(f"/monitors/{name}/observations", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert client.get(f"/monitors/{name}/segments").json()["segments"] == []
    unsegmented = new_monitor(client)
    response = client.post(f"/monitors/{unsegmented}/observations", json={**body, "tags": {"region": "eu"}})
    assert response.status_code == 422 and "has no segments" in response.json()["detail"]


def test_segments_are_bounded_per_monitor(client: TestClient) -> None:
    name = new_monitor(client, segments=["user"])
    for i in range(100):  # LOSSD_MAX_SEGMENTS, default 100
        observe(client, name, [1.0], timestamp=T0, tags={"user": f"u{i}"})
    body = {"predictions": [[1.0]], "targets": [[0.0]], "timestamp": T0, "tags": {"user": "one-too-many"}}
    response = client.post(f"/monitors/{name}/observations", json=body)
    assert response.status_code == 422 and response.json()["field"] == "tags"
    assert "LOSSD_MAX_SEGMENTS" in response.json()["detail"]
    observe(client, name, [1.0], timestamp=T0, tags={"user": "u7"})  # an existing segment is fine
    assert len(client.get(f"/monitors/{name}/segments").json()["segments"]) == 100
    assert windows(client, name)[0]["count"] == 101


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"segments": ["bad key"]}, "segments"),
        ({"segments": ["monitor"]}, "segments"),
        ({"segments": ["region", "region"]}, "segments"),
        ({"segments": [f"k{i}" for i in range(17)]}, "segments"),
        ({"retention_seconds": 30}, "retention_seconds"),  # shorter than the 60 s window
        ({"retention_seconds": 0}, "retention_seconds"),
    ],
)
def test_bad_segments_or_retention_are_422(client: TestClient, fields: dict[str, Any], field: str) -> None:
    response = client.post("/monitors", json={"name": "bad", "loss": "mse", "window_seconds": WINDOW, **fields})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_a_tag_filter_names_declared_keys(client: TestClient) -> None:
    name = new_monitor(client, segments=["region"])
    for query, detail in (("colour:red", "not a segment"), ("region", "not key:value"), ("region:a,region:b", "twice")):
        response = client.get(f"/monitors/{name}/windows", params={"tags": query})
        assert response.status_code == 422 and response.json()["field"] == "tags", query
        assert detail in response.json()["detail"]


def test_retention_hides_and_refuses_windows_past_it(client: TestClient) -> None:
    import time

    name = new_monitor(client, retention_seconds=10 * WINDOW)
    now = time.time()
    observe(client, name, [1.0], timestamp=now - 5 * WINDOW)
    observe(client, name, [2.0], timestamp=now)
    assert [w["count"] for w in windows(client, name)] == [1, 1]
    body = {"predictions": [[1.0]], "targets": [[0.0]], "timestamp": now - 20 * WINDOW}
    response = client.post(f"/monitors/{name}/observations", json=body)
    assert response.status_code == 422 and response.json()["field"] == "timestamp"
    assert "retention_seconds" in response.json()["detail"]
    view = client.get(f"/monitors/{name}").json()
    assert view["retention_seconds"] == 10 * WINDOW and view["totals"]["count"] == 2


def test_the_page_shows_each_segment(client: TestClient) -> None:
    name = new_monitor(client, segments=["region"], baseline={"windows": 1})
    observe(client, name, [1.0, 1.0, 1.1], timestamp=T0, tags={"region": "eu"})
    observe(client, name, [2.0], timestamp=T0, tags={"region": "apac<&>"})
    html = page_of(client, name)
    section = html[html.index(f"<h2>{name} ") :]
    table = section[section.index("<table class='segments'>") : section.index("</table>")]
    assert "<th>region</th><th>samples</th><th>mean</th><th>state</th><th>drift</th>" in table
    assert "<tr><td>eu</td><td>3</td><td>1.03333</td>" in table
    assert "<td>apac&lt;&amp;&gt;</td><td>1</td><td>2</td>" in table  # tag values are escaped


def page_of(client: TestClient, name: str) -> str:
    """The page of /ui/monitors that shows ``name`` (20 monitors a page, by name)."""
    names = sorted(m["name"] for m in client.get("/monitors").json()["monitors"])
    return str(client.get(f"/ui/monitors?page={names.index(name) // 20 + 1}").text)


def reads_answer(client: TestClient, name: str) -> None:
    """Every read of a monitor answers (none is a 500)."""
    for path in (f"/monitors/{name}", f"/monitors/{name}/windows", f"/monitors/{name}/segments", "/monitors"):
        assert client.get(path).status_code == 200, path
    assert client.get("/ui/monitors").status_code == 200
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize(
    ("window_seconds", "timestamp"),
    [
        (3600, "9999-12-31T23:30:00Z"),  # its window would end at 10000-01-01T00:00:00Z
        (60, "9999-12-31T23:59:30Z"),
        (60, 253402300799.5),
        (60, "253402300799"),
        (10 * 366 * 86400, "9999-06-01T00:00:00Z"),  # from 9996-08: ends in 10006
        (60, "9999-12-31T23:59:59-00:01"),  # 10000-01-01T00:00:59Z
    ],
)
def test_a_window_that_would_end_after_9999_is_422(client: TestClient, window_seconds: int, timestamp: Any) -> None:
    name = new_monitor(client, window_seconds=window_seconds)
    body = {"predictions": [[1.0]], "targets": [[0.0]], "timestamp": timestamp}
    response = client.post(f"/monitors/{name}/observations", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "timestamp" and "9999" in response.json()["detail"]
    reads_answer(client, name)
    assert client.get(f"/monitors/{name}").json()["totals"]["count"] == 0
    assert client.delete(f"/monitors/{name}").status_code == 204


def test_the_last_window_before_10000_is_kept(client: TestClient) -> None:
    name = new_monitor(client)
    assert observe(client, name, [1.0], timestamp="9999-12-31T23:58:59.5Z")["window"] == "9999-12-31T23:58:00Z"
    [window] = windows(client, name, since="9999-12-31T23:58:00Z")
    assert (window["start"], window["end"]) == ("9999-12-31T23:58:00Z", "9999-12-31T23:59:00Z")
    reads_answer(client, name)
    bad = client.get(f"/monitors/{name}/windows", params={"step": 120})  # its window would end at 10000
    assert bad.status_code == 422 and bad.json()["field"] == "step" and "9999" in bad.json()["detail"]
    assert client.delete(f"/monitors/{name}").status_code == 204


@pytest.mark.parametrize("step", [36_000_000_000_000, 253402300800, 60 * 10**30])
def test_a_step_beyond_what_a_time_can_be_is_422(client: TestClient, step: int) -> None:
    name = new_monitor(client)
    observe(client, name, [1.0], timestamp=T0)
    response = client.get(f"/monitors/{name}/windows", params={"step": step})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "step"
    assert client.get(f"/monitors/{name}/windows", params={"step": 60 * 10**8}).status_code == 200  # 190 years


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": "1e400"}, "since"),
        ({"until": "9" * 400}, "until"),
        ({"since": "10000-01-01T00:00:00Z"}, "since"),
        ({"until": "0001-01-01T00:00:00+01:00"}, "until"),
        ({"since": "nan"}, "since"),
    ],
)
def test_since_and_until_beyond_what_a_time_can_be_are_422(
    client: TestClient, query: dict[str, str], field: str
) -> None:
    name = new_monitor(client)
    observe(client, name, [1.0], timestamp=T0)
    response = client.get(f"/monitors/{name}/windows", params=query)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_windows_stored_beyond_9999_do_not_break_reads(client: TestClient) -> None:
    """A window a database kept from before timestamps were checked: reads still answer."""
    from service.monitors.aggregate import Aggregate
    from service.monitors.store import Store

    name = new_monitor(client, window_seconds=3600, baseline={"windows": 1})
    store: Store = client.app.state.monitors  # type: ignore[attr-defined]
    monitor = store.get(name)
    assert monitor is not None
    assert store.record(monitor, T0 - T0 % 3600, Aggregate.of(np.array([1.0])))
    assert store.record(monitor, 253402300800 - 3600, Aggregate.of(np.array([2.0])))
    reads_answer(client, name)
    got = windows(client, name)
    assert [w["end"] for w in got][-1] == "+10000-01-01T00:00:00Z"  # ISO 8601's expanded year
    assert client.delete(f"/monitors/{name}").status_code == 204


def test_views_answered_without_validation_are_exactly_their_models(client: TestClient) -> None:
    """GET windows and GET /monitors/{name} skip the response model's validation: every field
    of it must be there, and nothing else."""
    from service.monitors.schemas import MonitorView, WindowList

    name = new_monitor(client, segments=["region"], baseline={"windows": 1})
    plain = new_monitor(client, baseline={"windows": 1})
    for i in range(3):
        observe(client, name, [1.0, 2.0 + i], timestamp=T0 + i * WINDOW, tags={"region": "eu"})
        observe(client, plain, [1.0, 2.0 + i], timestamp=T0 + i * WINDOW)
    for path, model in (
        (f"/monitors/{name}/windows", WindowList),
        (f"/monitors/{plain}/windows", WindowList),
        (f"/monitors/{name}/windows?step={2 * WINDOW}", WindowList),
        (f"/monitors/{name}", MonitorView),
        (f"/monitors/{plain}", MonitorView),
    ):
        response = client.get(path)
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        answered = response.json()
        assert model.model_validate(answered).model_dump() == answered, path
