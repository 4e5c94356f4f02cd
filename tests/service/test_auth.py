"""LOSSD_API_KEYS on a real server (tests/service/conftest.py): every endpoint but health
needs a key, the compute fast path included; keys never reach the log."""

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from service.auth import BearerAuth, bearer_token
from service.settings import Settings
from tests.service.conftest import KEYS, Guarded

MSE = {"predictions": [[0.5, 1.0]], "targets": [[0.0, 1.0]]}
V2_MSE = {
    "inputs": [
        {"name": "predictions", "shape": [1, 2], "datatype": "FP32", "data": [0.5, 1.0]},
        {"name": "targets", "shape": [1, 2], "datatype": "FP32", "data": [0.0, 1.0]},
    ]
}
GUARDED = [
    ("GET", "/losses"),
    ("GET", "/losses/mse"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("POST", "/loss/mse"),
    ("GET", "/v2"),
    ("GET", "/v2/models/mse"),
    ("POST", "/v2/models/mse/infer"),
]


@pytest.mark.parametrize("path", ["/health", "/v2/health/live", "/v2/health/ready"])
def test_health_needs_no_key(guarded: Guarded, path: str) -> None:
    assert httpx.get(f"{guarded.url}{path}").status_code == 200


@pytest.mark.parametrize(("method", "path"), GUARDED)
def test_every_other_endpoint_needs_a_key(guarded: Guarded, method: str, path: str) -> None:
    response = httpx.request(method, f"{guarded.url}{path}", json=V2_MSE if "/v2/" in path else MSE)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    if path.startswith("/v2"):
        assert "Authorization: Bearer" in response.json()["error"]
    else:
        assert response.headers["content-type"] == "application/problem+json"
        assert "Authorization: Bearer" in response.json()["detail"]


@pytest.mark.parametrize(
    "authorization",
    ["Bearer not-a-key", f"Bearer {KEYS[0][:-1]}", f"Bearer {KEYS[0]}x", f"Basic {KEYS[0]}", "Bearer", KEYS[0]],
)
def test_a_wrong_key_or_scheme_is_401(guarded: Guarded, authorization: str) -> None:
    response = httpx.post(f"{guarded.url}/loss/mse", json=MSE, headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["status"] == 401


@pytest.mark.parametrize("key", KEYS)
def test_each_key_opens_every_endpoint(guarded: Guarded, key: str) -> None:
    with httpx.Client(base_url=guarded.url, headers=guarded.authorized(key)) as client:
        rest = client.post("/loss/mse", json=MSE)
        v2 = client.post("/v2/models/mse/infer", json=V2_MSE)
        assert rest.status_code == 200 and rest.json()["loss"] == 0.125
        assert v2.status_code == 200 and v2.json()["outputs"][0]["data"] == [0.125]
        assert client.get("/losses/mse").status_code == 200
        assert client.get("/metrics").status_code == 200
        # The scheme is case-insensitive (RFC 9110).
        assert client.get("/v2", headers={"Authorization": f"bearer {key}"}).status_code == 200


def test_keys_never_reach_the_log_or_the_settings_repr(guarded: Guarded) -> None:
    httpx.get(f"{guarded.url}/losses", headers={"Authorization": f"Bearer {KEYS[1]}"})
    httpx.get(f"{guarded.url}/losses", headers={"Authorization": "Bearer wrong-key"})
    log = guarded.log.read_text()
    assert not any(key in log for key in KEYS)
    settings = Settings(api_keys=",".join(KEYS))
    assert [key.get_secret_value() for key in settings.api_keys] == list(KEYS)
    assert not any(key in repr(settings) or key in str(settings.model_dump()) for key in KEYS)


def test_keys_are_comma_separated_with_blanks_dropped() -> None:
    settings = Settings(api_keys=" a , b,,")
    assert [key.get_secret_value() for key in settings.api_keys] == ["a", "b"]
    assert Settings(api_keys="").api_keys == []


async def unreachable(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("only the comparison is called")


def test_bearer_token_and_comparison() -> None:
    assert bearer_token([(b"authorization", b"Bearer abc")]) == b"abc"
    assert bearer_token([(b"authorization", b"BEARER  abc ")]) == b"abc"
    assert bearer_token([(b"authorization", b"Basic abc")]) is None
    assert bearer_token([(b"authorization", b"Bearer ")]) is None
    assert bearer_token([(b"accept", b"*/*")]) is None
    auth = BearerAuth(unreachable, Settings(api_keys="one,two").api_keys)
    assert auth.authorized(b"one") and auth.authorized(b"two")
    assert not auth.authorized(b"on") and not auth.authorized(b"onetwo") and not auth.authorized(b"")
