"""LOSSD_CORS_ORIGINS: CORS headers on every response when set (the compute fast path and
refusals included), and no CORS machinery at all when unset."""

import httpx
from fastapi.testclient import TestClient

from service.app import GuardedApp, LossdApp, create_app
from service.settings import Settings
from tests.service.conftest import ORIGIN, Guarded

MSE = {"predictions": [[0.5, 1.0]], "targets": [[0.0, 1.0]]}


def test_preflight_from_an_allowed_origin_allows_the_auth_header(guarded: Guarded) -> None:
    response = httpx.options(
        f"{guarded.url}/loss/mse",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200  # preflights carry no credentials: answered before the key check
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


def test_fast_path_and_refusals_carry_cors_headers(guarded: Guarded) -> None:
    computed = httpx.post(f"{guarded.url}/loss/mse", json=MSE, headers={**guarded.authorized(), "Origin": ORIGIN})
    refused = httpx.post(f"{guarded.url}/loss/mse", json=MSE, headers={"Origin": ORIGIN})
    v2 = httpx.get(f"{guarded.url}/v2/health/live", headers={"Origin": ORIGIN})
    assert computed.status_code == 200 and computed.headers["access-control-allow-origin"] == ORIGIN
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == ORIGIN
    assert "www-authenticate" in refused.headers["access-control-expose-headers"].lower()
    assert v2.headers["access-control-allow-origin"] == ORIGIN


def test_other_origins_get_no_cors_headers(guarded: Guarded) -> None:
    response = httpx.post(
        f"{guarded.url}/loss/mse", json=MSE, headers={**guarded.authorized(), "Origin": "http://evil.example"}
    )
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    preflight = httpx.options(
        f"{guarded.url}/loss/mse",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 400


def test_cors_is_off_unless_configured() -> None:
    app = create_app(Settings(provider="cpu"))
    # The plain class: no layer around the fast path when neither keys nor origins are set.
    assert type(app) is LossdApp
    assert isinstance(create_app(Settings(cors_origins="http://a.example")), GuardedApp)
    response = TestClient(app).get("/v2/health/live", headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert not any(name.startswith("access-control-") for name in response.headers)


def test_origins_are_comma_separated() -> None:
    assert Settings(cors_origins="http://a.example, https://b.example,").cors_origins == [
        "http://a.example",
        "https://b.example",
    ]
