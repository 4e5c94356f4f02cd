"""Where parsing could be lenient, what lossd decided (README, "Parsing"), issue 18's list:
duplicate JSON keys, strings and booleans where numbers go, bytes after a gzip stream,
timestamps with non-ASCII digits."""

from __future__ import annotations

import gzip
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

FOCAL = '"predictions": [[0.2, 0.7]], "targets": [[0, 1]]'


def loss(client: TestClient, body: str | bytes, path: str = "/loss/focal", **headers: str) -> Any:
    response = client.post(path, content=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["loss"]


@pytest.mark.parametrize("size", [1, 600])  # orjson reads small bodies, simdjson large ones: the same rule
def test_a_duplicate_key_takes_its_last_value(client: TestClient, size: int) -> None:
    first, last = ",".join(["0.2"] * size), ",".join(["0.9"] * size)
    targets = ",".join(["1"] * size)
    duplicated = f'{{"predictions": [{first}], "targets": [{targets}], "predictions": [{last}], '
    duplicated += '"params": {"gamma": 1.0, "gamma": 3.0}}'
    plain = f'{{"predictions": [{last}], "targets": [{targets}], "params": {{"gamma": 3.0}}}}'
    assert loss(client, duplicated) == loss(client, plain)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/loss/focal", f'{{{FOCAL}, "params": {{"gamma": "3"}}}}', "params.gamma"),
        ("/loss/focal", f'{{{FOCAL}, "params": {{"gamma": true}}}}', "params.gamma"),
        ("/loss/focal", f'{{{FOCAL}, "params": {{"from_logits": 1}}}}', "params.from_logits"),
        ("/loss/composite", f'{{{FOCAL}, "terms": [{{"loss": "focal", "params": {{"alpha": "0.5"}}}}]}}', None),
    ],
)
def test_a_param_of_the_wrong_json_type_is_a_422_naming_it(
    client: TestClient, path: str, body: str, field: str | None
) -> None:
    response = client.post(path, content=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == (field or "terms[0].params.alpha")
    assert "is a JSON" in response.json()["detail"]


def test_v2_parameters_may_still_be_text(client: TestClient) -> None:
    body = v2_body({"gamma": "3"})
    assert loss_v2(client, body) == loss_v2(client, v2_body({"gamma": 3.0}))


def v2_body(parameters: dict[str, Any]) -> bytes:
    tensors = [
        {"name": "predictions", "shape": [1, 2], "datatype": "FP32", "data": [0.2, 0.7]},
        {"name": "targets", "shape": [1, 2], "datatype": "FP32", "data": [0, 1]},
    ]
    return orjson.dumps({"inputs": tensors, "parameters": parameters})


def loss_v2(client: TestClient, body: bytes, **headers: str) -> float:
    response = client.post("/v2/models/focal/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    value: float = response.json()["outputs"][0]["data"][0]
    return value


def test_gzip_members_are_read_in_turn_and_trailing_bytes_refused(client: TestClient) -> None:
    body = v2_body({})
    expected = loss_v2(client, body)
    two_members = gzip.compress(body[:20]) + gzip.compress(body[20:])
    assert loss_v2(client, two_members, **{"Content-Encoding": "gzip"}) == expected
    trailing = client.post(
        "/v2/models/focal/infer", content=gzip.compress(body) + b"junk", headers={"Content-Encoding": "gzip"}
    )
    assert trailing.status_code == 400
    assert "4 bytes follow the compressed stream" in trailing.json()["error"]


@pytest.mark.parametrize(
    ("timestamp", "accepted"),
    [
        ("1700000000", True),
        ("1700000000.5", True),
        ("2026-01-01T00:00:00Z", True),
        ("\uff11\uff17\uff10\uff10\uff10\uff10\uff10\uff10\uff10\uff10", False),  # fullwidth 1700000000
        ("\uff12\uff10\uff12\uff16-01-01T00:00:00Z", False),
        ("1_700_000_000", False),
        (" 1700000000", False),
        ("nan", False),
    ],
)
def test_timestamps_take_ascii_digits_only(client: TestClient, timestamp: str, accepted: bool) -> None:
    name = "leniency"
    client.post("/monitors", json={"name": name, "loss": "mse"})
    response = client.post(
        f"/monitors/{name}/observations", json={"predictions": [1.0], "targets": [0.0], "timestamp": timestamp}
    )
    assert response.status_code == (200 if accepted else 422), response.text
    if not accepted:
        assert response.json()["field"] == "timestamp"
