"""Late labels by prediction id on SQLite and PostgreSQL: predictions stored by id, labels
joined to them and recorded in the prediction's window and segment; idempotent repeats and
409s; unmatched ids and duplicates; expiry after label_ttl_seconds (bounded rows); bad input
named; the stored rows compact."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.monitors.pending import claim, decode, encode, index_of, put, waiting
from service.monitors.store import EXPIRED_PER_WRITE, Store, open_store
from service.settings import Settings
from tests.service.monitors.test_store import fresh_postgres

WINDOW = 60
T0 = 1_700_000_000 - 1_700_000_000 % WINDOW
_names = itertools.count()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def labelled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """An app on each kind of database."""
    directory = tmp_path_factory.mktemp("labels")
    if request.param == "sqlite":
        url = f"sqlite:///{directory / 'monitors.db'}"
    else:
        url = fresh_postgres(request.getfixturevalue("postgres_url"))
    with TestClient(create_app(Settings(database_url=url, grpc_port=0))) as client:
        yield client


def store_of(client: TestClient) -> Store:
    store: Store = client.app.state.monitors  # type: ignore[attr-defined]
    return store


def new_monitor(client: TestClient, **fields: Any) -> str:
    name = f"l{next(_names)}"
    body = {"name": name, "loss": "mse", "window_seconds": WINDOW, **fields}
    response = client.post("/monitors", json=body)
    assert response.status_code == 201, response.text
    return name


def post(client: TestClient, name: str, what: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    response = client.post(f"/monitors/{name}/{what}", json=body)
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


def stored_rows(client: TestClient, name: str, expired_too: bool = True) -> int:
    """The monitor's predictions waiting for labels (also those expired but not yet deleted)."""
    store = store_of(client)
    monitor = store.get(name)
    assert monitor is not None
    return waiting(store, monitor, 0.0 if expired_too else time.time())


def windows(client: TestClient, name: str, **query: Any) -> list[dict[str, Any]]:
    response = client.get(f"/monitors/{name}/windows", params=query)
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()["windows"]
    return result


def test_labels_join_by_id_into_the_predictions_windows_and_segments(labelled: TestClient) -> None:
    name = new_monitor(labelled, segments=["model_version"])
    # mse per sample: prediction squared (targets 0); two windows, two segments.
    for ids, values, stamp, version in (
        (["a", "b", "c"], [1.0, 2.0, 3.0], T0 + 1, "v1"),
        (["d", "e"], [4.0, 5.0], "2023-11-14T22:14:30Z", "v1"),  # T0 + 90 s: the next window
        (["f"], [6.0], T0 + 2, "v2"),
    ):
        body = {
            "ids": ids,
            "predictions": [[v] for v in values],
            "timestamp": stamp,
            "tags": {"model_version": version},
        }
        assert post(labelled, name, "predictions", body) == {"accepted": len(ids), "duplicates": 0}
    assert stored_rows(labelled, name) == 6
    assert windows(labelled, name) == []  # nothing is recorded before its label
    body = {"ids": ["e", "zz", "a", "f", "a", "d"], "targets": [[0.0]] * 6, "weights": [1.0, 1.0, 2.0, 1.0, 2.0, 1.0]}
    answer = post(labelled, name, "labels", body)
    expected = (25.0 + 2.0 * 1.0 + 36.0 + 16.0) / 5.0  # weighted mean over e, a (weight 2), f, d
    assert answer == {"matched": 4, "unmatched": 1, "duplicates": 1, "loss": pytest.approx(expected)}
    assert stored_rows(labelled, name) == 2  # b and c wait
    v1 = windows(labelled, name, tags="model_version:v1")
    assert [(w["start"], w["count"]) for w in v1] == [("2023-11-14T22:13:00Z", 1), ("2023-11-14T22:14:00Z", 2)]
    assert v1[1]["mean"] == pytest.approx(41.0 / 2) and v1[0]["mean"] == pytest.approx(1.0)
    assert [(w["count"], w["mean"]) for w in windows(labelled, name, tags="model_version:v2")] == [(1, 36.0)]
    segments = {
        s["tags"]["model_version"]: s["count"] for s in labelled.get(f"/monitors/{name}/segments").json()["segments"]
    }
    assert segments == {"v1": 3, "v2": 1}
    totals = labelled.get(f"/monitors/{name}").json()["totals"]
    assert totals["count"] == 4 and totals["max"] == pytest.approx(36.0)
    # Labelled ids no longer wait: their labels again are unmatched, nothing counted twice.
    again = post(labelled, name, "labels", {"ids": ["a", "b"], "targets": [[0.0], [0.0]]})
    assert again == {"matched": 1, "unmatched": 1, "duplicates": 0, "loss": pytest.approx(4.0)}
    none = post(labelled, name, "labels", {"ids": ["nope"], "targets": [[1.0]]})
    assert none == {"matched": 0, "unmatched": 1, "duplicates": 0, "loss": None}
    assert labelled.get(f"/monitors/{name}").json()["totals"]["count"] == 5
    # A labelled id is free again: a new prediction under it waits.
    assert post(labelled, name, "predictions", {"ids": ["a"], "predictions": [[7.0]], "timestamp": T0})["accepted"] == 1


def test_an_id_sent_again_keeps_waiting_when_its_first_row_is_forgotten(labelled: TestClient) -> None:
    """The index forgets a row once its last prediction is labelled; an id of that row sent
    again meanwhile belongs to the later row and must still be found."""
    name = new_monitor(labelled)
    post(labelled, name, "predictions", {"ids": ["x", "y"], "predictions": [[1.0], [2.0]], "timestamp": T0})
    assert post(labelled, name, "labels", {"ids": ["x"], "targets": [[0.0]]})["matched"] == 1
    post(labelled, name, "predictions", {"ids": ["x"], "predictions": [[3.0]], "timestamp": T0})  # x is free again
    assert post(labelled, name, "labels", {"ids": ["y"], "targets": [[0.0]]})["matched"] == 1  # the first row goes
    answer = post(labelled, name, "labels", {"ids": ["x"], "targets": [[0.0]]})
    assert answer == {"matched": 1, "unmatched": 0, "duplicates": 0, "loss": pytest.approx(9.0)}
    assert stored_rows(labelled, name) == 0


def test_a_prediction_without_timestamp_lands_in_the_window_it_was_stored_in(labelled: TestClient) -> None:
    name = new_monitor(labelled)
    before = time.time()
    post(labelled, name, "predictions", {"ids": ["now"], "predictions": [[2.0]]})
    post(labelled, name, "predictions", {"ids": ["now"], "predictions": [[2.0]]})  # a retry: the same content
    post(labelled, name, "labels", {"ids": ["now"], "targets": [[0.0]]})
    [window] = windows(labelled, name)
    start = int(np.datetime64(window["start"].rstrip("Z"), "s").astype(int))
    assert start == int(before // WINDOW) * WINDOW or start == int(time.time() // WINDOW) * WINDOW
    assert window["count"] == 1 and window["mean"] == 4.0
    monitor = store_of(labelled).get(name)
    assert monitor is not None and index_of(store_of(labelled), monitor).ids == {}  # its row went: forgotten


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"predictions": [[9.0], [1.5]]}, "waits for its label with other content"),
        ({"timestamp": T0 + WINDOW}, "waits for its label with other content"),
        ({"tags": {"region": "us"}}, "waits for its label with other content"),
        ({"ids": ["new", "new"]}, "given twice in this request"),
    ],
)
def test_an_id_with_other_content_is_409_naming_it(labelled: TestClient, change: dict[str, Any], detail: str) -> None:
    name = new_monitor(labelled, segments=["region"])
    body: dict[str, Any] = {"ids": ["p"], "predictions": [[1.0]], "timestamp": T0, "tags": {"region": "eu"}}
    assert post(labelled, name, "predictions", body) == {"accepted": 1, "duplicates": 0}
    same = {**body, "timestamp": "2023-11-14T22:13:00Z"}  # the same moment written otherwise
    assert post(labelled, name, "predictions", same) == {"accepted": 0, "duplicates": 1}
    both = {**body, "ids": ["p", "q", "q"], "predictions": [[1.0], [3.0], [3.0]]}  # one waiting, one repeated
    assert post(labelled, name, "predictions", both) == {"accepted": 1, "duplicates": 2}
    conflicting = {**body, "ids": ["new", *body["ids"]], "predictions": [[9.0], [1.0]], **change}
    problem = post(labelled, name, "predictions", conflicting, status=409)
    named = "new" if "twice" in detail else "p"
    assert problem["field"] == "ids" and problem["id"] == named and f"'{named}'" in problem["detail"]
    assert detail in problem["detail"]
    assert stored_rows(labelled, name) == 2  # p and q; nothing of the refused request ("new")
    answer = post(labelled, name, "labels", {"ids": ["p", "q", "new"], "targets": [[0.0]] * 3})
    assert answer == {"matched": 2, "unmatched": 1, "duplicates": 0, "loss": pytest.approx(5.0)}


def test_an_id_labelled_twice_in_a_request_with_other_targets_is_409(labelled: TestClient) -> None:
    name = new_monitor(labelled)
    post(labelled, name, "predictions", {"ids": ["x"], "predictions": [[1.0]], "timestamp": T0})
    for body in (
        {"ids": ["x", "x"], "targets": [[0.0], [1.0]]},
        {"ids": ["x", "x"], "targets": [[0.0], [0.0]], "weights": [1.0, 2.0]},
    ):
        problem = post(labelled, name, "labels", body, status=409)
        assert problem["field"] == "ids" and problem["id"] == "x"
    assert stored_rows(labelled, name) == 1 and windows(labelled, name) == []


def test_predictions_expire_after_the_label_ttl(labelled: TestClient) -> None:
    name = new_monitor(labelled, label_ttl_seconds=1)
    assert labelled.get(f"/monitors/{name}").json()["label_ttl_seconds"] == 1
    post(labelled, name, "predictions", {"ids": ["old", "older"], "predictions": [[1.0], [1.0]], "timestamp": T0})
    time.sleep(1.3)
    assert stored_rows(labelled, name, expired_too=False) == 0
    answer = post(labelled, name, "labels", {"ids": ["old"], "targets": [[0.0]]})
    assert answer == {"matched": 0, "unmatched": 1, "duplicates": 0, "loss": None}
    # A new write deletes expired rows; an expired id may be stored anew (and then matches).
    post(labelled, name, "predictions", {"ids": ["older"], "predictions": [[3.0]], "timestamp": T0})
    assert stored_rows(labelled, name) == 1
    answer = post(labelled, name, "labels", {"ids": ["older"], "targets": [[0.0]]})
    assert answer == {"matched": 1, "unmatched": 0, "duplicates": 0, "loss": 9.0}


def test_the_default_label_ttl_is_seven_days(labelled: TestClient) -> None:
    name = new_monitor(labelled)
    assert labelled.get(f"/monitors/{name}").json()["label_ttl_seconds"] == 7 * 86400


def test_other_inputs_travel_with_the_predictions_and_layouts_are_computed_apart(labelled: TestClient) -> None:
    """gaussian_nll keeps its variance beside the predictions; sparse cross-entropy predictions
    of two class counts (two layouts) are labelled in one request: two kernel calls."""
    rng = np.random.default_rng(4)
    gauss = new_monitor(labelled, loss="gaussian_nll")
    predictions, variance, targets = rng.normal(size=(5, 2)), rng.uniform(0.5, 2.0, (5, 2)), rng.normal(size=(5, 2))
    ids = [f"g{i}" for i in range(5)]
    body = {"ids": ids, "predictions": predictions.tolist(), "variance": variance.tolist(), "timestamp": T0}
    post(labelled, gauss, "predictions", body)
    order = [3, 0, 4, 1, 2]
    answer = post(labelled, gauss, "labels", {"ids": [ids[i] for i in order], "targets": targets[order].tolist()})
    reference = labelled.post(
        "/loss/gaussian_nll",
        json={"predictions": predictions.tolist(), "variance": variance.tolist(), "targets": targets.tolist()},
    ).json()["loss"]
    assert answer["matched"] == 5 and answer["loss"] == pytest.approx(reference, rel=1e-6)

    sparse = new_monitor(labelled, loss="sparse_cross_entropy", params={"from_logits": True})
    three, four = rng.normal(size=(3, 3)), rng.normal(size=(2, 4))
    post(labelled, sparse, "predictions", {"ids": ["s0", "s1", "s2"], "predictions": three.tolist(), "timestamp": T0})
    post(labelled, sparse, "predictions", {"ids": ["t0", "t1"], "predictions": four.tolist(), "timestamp": T0})
    answer = post(labelled, sparse, "labels", {"ids": ["t1", "s0", "s2", "t0", "s1"], "targets": [3, 0, 2, 1, 1]})
    per_sample = []
    for logits, labels in ((three, [0, 1, 2]), (four, [1, 3])):
        body = {"predictions": logits.tolist(), "targets": labels, "params": {"from_logits": True}}
        per_sample += labelled.post("/loss/sparse_cross_entropy", json={**body, "outputs": ["per_sample"]}).json()[
            "per_sample"
        ]
    assert answer["matched"] == 5 and answer["loss"] == pytest.approx(float(np.mean(per_sample)), rel=1e-6)
    [window] = windows(labelled, sparse)
    assert window["count"] == 5 and window["max"] == pytest.approx(max(per_sample), rel=1e-6)


def test_bad_labels_record_nothing_and_keep_the_predictions(labelled: TestClient) -> None:
    name = new_monitor(labelled, loss="bce")
    post(labelled, name, "predictions", {"ids": ["a", "b"], "predictions": [0.2, 0.9], "timestamp": T0})
    problem = post(labelled, name, "labels", {"ids": ["a", "b"], "targets": [0.0, 7.0]}, status=422)
    assert problem["field"] == "targets"
    assert stored_rows(labelled, name) == 2 and windows(labelled, name) == []
    assert post(labelled, name, "labels", {"ids": ["a", "b"], "targets": [0.0, 1.0]})["matched"] == 2


def test_a_prediction_past_retention_is_422_and_deleting_the_monitor_deletes_its_predictions(
    labelled: TestClient,
) -> None:
    name = new_monitor(labelled, retention_seconds=10 * WINDOW)
    body = {"ids": ["x"], "predictions": [[1.0]], "timestamp": time.time() - 20 * WINDOW}
    problem = post(labelled, name, "predictions", body, status=422)
    assert problem["field"] == "timestamp" and "retention_seconds" in problem["detail"]
    post(labelled, name, "predictions", {"ids": ["y"], "predictions": [[1.0]]})
    store = store_of(labelled)
    monitor = store.get(name)
    assert monitor is not None and labelled.delete(f"/monitors/{name}").status_code == 204
    assert store.query("SELECT COUNT(*) FROM lossd_prediction_batches WHERE monitor_id = ?", (monitor.id,))[0][0] == 0


PREDICTION = {"ids": ["a", "b"], "predictions": [[1.0], [2.0]]}
LABEL = {"ids": ["a", "b"], "targets": [[0.0], [0.0]]}


@pytest.mark.parametrize(
    ("what", "body", "field"),
    [
        ("predictions", {**PREDICTION, "ids": "a"}, "ids"),
        ("predictions", {**PREDICTION, "ids": []}, "ids"),
        ("predictions", {"predictions": [[1.0]]}, "ids"),
        ("predictions", {**PREDICTION, "ids": ["a", 2]}, "ids[1]"),
        ("predictions", {**PREDICTION, "ids": ["a", "x" * 129]}, "ids[1]"),
        ("predictions", {**PREDICTION, "ids": ["a", ""]}, "ids[1]"),
        ("predictions", {**PREDICTION, "ids": ["a", "b", "c"]}, "predictions"),
        ("predictions", {"ids": ["a"]}, "predictions"),
        ("predictions", {**PREDICTION, "targets": [[0.0], [0.0]]}, "targets"),
        ("predictions", {**PREDICTION, "weights": [1.0, 1.0]}, "weights"),
        ("predictions", {**PREDICTION, "timestamp": "yesterday"}, "timestamp"),
        ("predictions", {**PREDICTION, "tags": {"colour": "red"}}, "tags.colour"),
        ("labels", {**LABEL, "ids": [1, 2]}, "ids[0]"),
        ("labels", {**LABEL, "ids": ["a", "b", "c"]}, "targets"),
        ("labels", {"ids": ["a"]}, "targets"),
        ("labels", {**LABEL, "weights": [1.0]}, "weights"),
        ("labels", {**LABEL, "predictions": [[1.0], [1.0]]}, "predictions"),
        ("labels", {**LABEL, "timestamp": T0}, "timestamp"),
    ],
)
def test_bad_input_is_422_naming_the_field(labelled: TestClient, what: str, body: dict[str, Any], field: str) -> None:
    name = new_monitor(labelled)
    post(labelled, name, "predictions", {"ids": ["a", "b"], "predictions": [[1.0], [2.0]], "timestamp": T0})
    problem = post(labelled, name, what, body, status=422)
    assert problem["field"] == field, problem
    assert stored_rows(labelled, name) == 2 and windows(labelled, name) == []


def test_ids_of_128_characters_are_fine_and_unknown_monitors_are_404(labelled: TestClient) -> None:
    name = new_monitor(labelled)
    long = "é" * 128
    assert (
        post(labelled, name, "predictions", {"ids": [long], "predictions": [[1.0]], "timestamp": T0})["accepted"] == 1
    )
    assert post(labelled, name, "labels", {"ids": [long], "targets": [[0.0]]})["matched"] == 1
    for what, body in (("predictions", PREDICTION), ("labels", LABEL)):
        response = labelled.post(f"/monitors/nope/{what}", json=body)
        assert response.status_code == 404 and response.json()["field"] == "name"


def test_a_loss_without_per_sample_targets_takes_no_predictions(labelled: TestClient) -> None:
    name = new_monitor(labelled, loss="triplet")
    body = {"ids": ["a"], "anchor": [[1.0]], "positive": [[1.0]], "negative": [[0.0]]}
    problem = post(labelled, name, "predictions", body, status=422)
    assert problem["field"] == "ids" and "observations" in problem["detail"]


@pytest.mark.parametrize("ttl", [0, -5, 366 * 86400 + 1, "soon"])
def test_a_bad_label_ttl_is_422(labelled: TestClient, ttl: Any) -> None:
    response = labelled.post("/monitors", json={"name": "badttl", "loss": "mse", "label_ttl_seconds": ttl})
    assert response.status_code == 422 and response.json()["field"] == "label_ttl_seconds"


# -- the store: rows, expiry's bound ----------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'monitors.db'}", tmp_path)
    yield opened
    opened.close()


def test_rows_are_binary_and_decode_to_what_was_sent() -> None:
    rng = np.random.default_rng(2)
    predictions, lengths = rng.normal(size=(4, 3, 2)), np.array([5, 2**25 + 1, 3, 7])
    layout, matrix = encode({"predictions": (predictions, False), "input_lengths": (lengths, True)}, 4)
    assert layout == "predictions:<f4:3,2;input_lengths:<f8:"
    assert matrix.shape == (4, 6 * 4 + 8)  # float32 values, float64 for integers
    back = decode(layout, matrix[[2, 0]])
    np.testing.assert_array_equal(back["predictions"], predictions[[2, 0]].astype(np.float32))
    np.testing.assert_array_equal(back["input_lengths"], [3, 5])
    assert decode(layout, matrix)["input_lengths"][1] == 2**25 + 1  # exact, beyond float32's integers


def batch_rows(store: Store) -> int:
    return int(store.query("SELECT COUNT(*) FROM lossd_prediction_batches")[0][0])


def test_expired_predictions_go_with_bounded_work_per_write(store: Store) -> None:
    """A request a second with a TTL of 10 s: the rows stay at what 10 s bring; a label of an
    expired id matches nothing, also while its row is not deleted yet."""
    monitor = store.create("ttl", "mse", {}, WINDOW, {"windows": 3}, label_ttl_seconds=10)
    layout, matrix = encode({"predictions": (np.ones((20, 1)), False)}, 20)
    for second in range(100):
        ids = [f"{second}-{i}" for i in range(20)]
        assert put(store, monitor, ids, layout, matrix, 0, "{}", None, now=float(second)) == 20
        assert batch_rows(store) <= 11, second
        assert len(index_of(store, monitor).ids) <= 11 * 20, second  # each worker's index forgets them too
    assert waiting(store, monitor, now=100.0) == 180  # the rows of 91 s to 99 s
    with store.transaction() as connection:
        claimed, _ = claim(store, connection, monitor, ["0-0", "99-0"], now=100.0)
    assert [(c.requests.tolist(), c.positions.tolist()) for c in claimed] == [([1], [0])]  # 99-0 alone
    assert waiting(store, monitor, now=100.0) == 179
    # More expired rows than a write deletes: those left are not matched either.
    burst = store.create("burst", "mse", {}, WINDOW, {"windows": 3}, label_ttl_seconds=10)
    for row in range(EXPIRED_PER_WRITE + 6):
        put(store, burst, [f"x{row}"], layout, matrix[:1], 0, "{}", None, now=1000.0)
    with store.transaction() as connection:
        assert claim(store, connection, burst, [f"x{row}" for row in range(EXPIRED_PER_WRITE + 6)], now=1011.0)[0] == []
    assert (
        int(store.query("SELECT COUNT(*) FROM lossd_prediction_batches WHERE monitor_id = ?", (burst.id,))[0][0]) == 6
    )


def test_more_elements_than_allowed_are_413_and_non_finite_values_422(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path, grpc_port=0, max_elements=10))) as client:
        name = new_monitor(client)
        ids = [f"i{k}" for k in range(11)]
        for what, body, field in (
            ("predictions", {"ids": ids, "predictions": [[1.0]] * 11}, "predictions"),
            ("labels", {"ids": ids, "targets": [[0.0]] * 11}, "targets"),
        ):
            response = client.post(f"/monitors/{name}/{what}", json=body)
            assert response.status_code == 413 and response.json()["field"] == field, response.text
        headers = {"content-type": "application/json"}
        response = client.post(
            f"/monitors/{name}/predictions", content=b'{"ids": ["a"], "predictions": [[NaN]]}', headers=headers
        )
        assert response.status_code == 422 and response.json()["field"] == "predictions", response.text
        assert stored_rows(client, name) == 0
