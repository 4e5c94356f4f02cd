"""service.json_arrays: simdjson's arrays are what orjson + np.asarray would give, or refused
the same way (the REST and V2 error tables in test_errors.py run through both paths)."""

import threading
from typing import Any

import numpy as np
import orjson
import pytest
import simdjson
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from service import json_arrays
from service.errors import Kind, ServiceError

NUMERIC = frozenset({"predictions", "targets", "weights"}).__contains__


def fast(body: bytes, limit: int | None = None) -> Any:
    """The simdjson path, whatever the body's size."""
    original = json_arrays.SMALL_BODY
    json_arrays.SMALL_BODY = 0
    try:
        return json_arrays.loads(body, NUMERIC, limit)
    finally:
        json_arrays.SMALL_BODY = original


VALID: list[Any] = [
    {"predictions": [0.5, 1, -2e-3, 18446744073709551615], "targets": [0, 1, 2, 3]},
    {"predictions": [[0.5, 1.0], [2.0, 3.0]], "targets": [[1, 0], [0, 1]], "weights": [1, 2]},
    {"predictions": [[[[0.1, 0.2]]], [[[0.3, 0.4]]]], "targets": [[[[1, 0]]], [[[0, 1]]]]},
    {"predictions": [[0.5], [1.0]], "targets": [[1], [0]]},
    {"predictions": [], "targets": [[]], "weights": [[], []]},
    {"predictions": [1.0], "params": {"class_weights": [1, [2, 3]], "name": "a [b], c"}, "outputs": ["loss"]},
    {"predictions": [[1.0, 2.0]], "é [,]": {"nested": [[1], [2, 3]]}, "weights": "not an array", "targets": 3},
]


def small(value: Any) -> Any:
    """The orjson path: a list, read by ``to_array`` through ``from_list``."""
    try:
        return json_arrays.from_list("predictions", value)
    except ServiceError as exc:
        return json_arrays.BadArray(exc)


@pytest.mark.parametrize("document", VALID, ids=range(len(VALID)))
def test_arrays_are_what_numpy_reads_and_the_rest_is_what_orjson_reads(document: dict[str, Any]) -> None:
    body = orjson.dumps(document)
    small_body = json_arrays.loads(body, NUMERIC)
    for decoded in (fast(body), fast(orjson.dumps(document, option=orjson.OPT_INDENT_2)), small_body):
        assert decoded.keys() == document.keys()
        for key, value in document.items():
            if NUMERIC(key) and isinstance(value, list):
                array = small(decoded[key]) if decoded is small_body else decoded[key]
                assert isinstance(array, np.ndarray), array
                np.testing.assert_array_equal(array, np.asarray(value, dtype=np.float64))
                assert array.shape == np.asarray(value, dtype=np.float64).shape
            else:
                assert decoded[key] == value


NUMBERS = st.one_of(st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False, width=32))
NESTED = st.recursive(NUMBERS, lambda inner: st.lists(inner, max_size=4), max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(st.lists(NESTED, min_size=0, max_size=4))
def test_an_array_is_taken_exactly_when_numpy_takes_it(value: list[Any]) -> None:
    """Ragged lists whose first row's shape predicts the count ([[1, 2], [3], [4, 5, 6]],
    [[1, [2, 3]], [[], 4]]) included: only a rectangular list becomes an array."""
    try:
        expected: np.ndarray | None = np.asarray(value, dtype=np.float64)
    except ValueError:
        expected = None
    for decoded in (fast(orjson.dumps({"predictions": value}))["predictions"], small(value)):
        if expected is None:
            assert isinstance(decoded, json_arrays.BadArray)
            assert "ragged" in decoded.error.detail or "64 axes" in decoded.error.detail, decoded.error.detail
        else:
            assert isinstance(decoded, np.ndarray), decoded
            np.testing.assert_array_equal(decoded, expected)
            assert decoded.shape == expected.shape


def test_the_element_cap_refuses_an_array_before_reading_it() -> None:
    # Strings: reading the array would find them; the cap, from its shape alone, answers first.
    body = orjson.dumps({"predictions": [["a"] * 10] * 100, "targets": [1.0]})
    decoded = fast(body, limit=999)
    assert isinstance(decoded["predictions"], json_arrays.BadArray)
    assert decoded["predictions"].error.kind is Kind.TOO_LARGE
    assert "LOSSD_MAX_ELEMENTS = 999" in decoded["predictions"].error.detail
    assert isinstance(fast(body, limit=1000)["predictions"], json_arrays.BadArray)  # not too large: not numbers
    assert fast(body, limit=1000)["predictions"].error.kind is Kind.INVALID


def test_a_proxy_that_outlives_its_document_does_not_break_the_next_parse() -> None:
    kept = json_arrays._parser().parse(b'{"predictions": [1]}')["predictions"]
    assert isinstance(kept, simdjson.Array)
    decoded = fast(orjson.dumps({"predictions": [1.0, 2.0]}))
    np.testing.assert_array_equal(decoded["predictions"], [1.0, 2.0])
    del kept


def test_threads_parse_at_once() -> None:
    bodies = [orjson.dumps({"predictions": [[float(i)] * 3] * 1000}) for i in range(4)]
    failures: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for _ in range(20):
                decoded = fast(bodies[index])["predictions"]
                assert isinstance(decoded, np.ndarray) and decoded.shape == (1000, 3) and decoded[0, 0] == index
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures


INFER: dict[str, Any] = {
    "id": "r1",
    "parameters": {"reduction": "sum", "alpha": 0.5},
    "inputs": [
        {"name": "predictions", "shape": [2, 3], "datatype": "FP32", "data": [[0.1, 0.5, 0.9], [0.2, 0.3, 0.4]]},
        {"name": "targets", "shape": [2, 3], "datatype": "INT64", "data": [1, 0, 1, 9007199254740993, 0, 1]},
        {"name": "weights", "shape": [2], "datatype": "FP64", "data": [1.5, 2], "parameters": {"x": "[,]"}},
    ],
    "outputs": [{"name": "loss", "parameters": {"binary_data": False}}, {"name": "per_sample"}],
}


def test_an_inference_header_is_what_orjson_reads_with_its_data_as_arrays() -> None:
    original = json_arrays.SMALL_BODY
    json_arrays.SMALL_BODY = 0
    try:
        decoded = json_arrays.loads_infer_header(orjson.dumps(INFER), lambda t: "i" if t == "INT64" else "d")
    finally:
        json_arrays.SMALL_BODY = original
    for tensor, expected in zip(decoded["inputs"], INFER["inputs"], strict=True):
        data = tensor.pop("data")
        assert isinstance(data, np.ndarray)
        assert data.tolist() == expected["data"]  # int64 kept exact (2**53 + 1)
        assert tensor == {k: v for k, v in expected.items() if k != "data"}
    assert {k: v for k, v in decoded.items() if k != "inputs"} == {k: v for k, v in INFER.items() if k != "inputs"}


@pytest.mark.parametrize("small_body", [0, 1 << 30], ids=["simdjson", "orjson"])
def test_both_paths_compute_the_same(client: TestClient, monkeypatch: pytest.MonkeyPatch, small_body: int) -> None:
    monkeypatch.setattr(json_arrays, "SMALL_BODY", small_body)
    rng = np.random.default_rng(0)
    predictions, targets = rng.uniform(0.01, 0.99, (64, 5)), rng.integers(0, 2, (64, 5))
    body = {"predictions": predictions.tolist(), "targets": targets.tolist(), "weights": [1.0] * 64}
    rest = client.post("/loss/focal", json={**body, "outputs": ["loss", "per_sample"], "dtype": "float64"})
    assert rest.status_code == 200, rest.text
    flat = client.post("/loss/mse", json={"predictions": predictions.ravel().tolist(), "targets": [0.5] * 320})
    assert flat.status_code == 200, flat.text
    infer = {
        "inputs": [
            {"name": "predictions", "shape": [64, 5], "datatype": "FP64", "data": predictions.tolist()},
            {"name": "targets", "shape": [64, 5], "datatype": "FP64", "data": targets.ravel().tolist()},
        ]
    }
    v2 = client.post("/v2/models/focal/infer", json=infer)
    assert v2.status_code == 200, v2.text
    assert v2.json()["outputs"][0]["data"] == [pytest.approx(rest.json()["loss"], rel=1e-12)]
    expected = float(np.mean((predictions.ravel() - 0.5) ** 2))
    assert flat.json()["loss"] == pytest.approx(expected, rel=1e-6)


def test_a_key_simdjson_cannot_look_up_is_read_by_orjson() -> None:
    """simdjson lists a key holding a NUL but does not find it again (it stops at the NUL):
    its KeyError was a 500. (More than MANY_KEYS members go to orjson too, for
    speed alone: simdjson's lookup is a scan, 100k members took 89 s.)"""
    body = b'{"\\u00c6\\u0000": 1, "predictions": [%s]}' % b", ".join([b"0.5"] * 1000)
    decoded = json_arrays.loads(body, lambda key: key == "predictions")
    assert decoded.keys() == orjson.loads(body).keys()
    assert np.asarray(decoded["predictions"]).tolist() == [0.5] * 1000
