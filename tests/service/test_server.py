"""The real thing: `lossd serve` (uvicorn) on 127.0.0.1, called over TCP with httpx."""

import httpx
import numpy as np
from fastapi.testclient import TestClient

from tests.server import running_server


def test_real_server_agrees_with_the_app_and_stops_cleanly(client: TestClient) -> None:
    rng = np.random.default_rng(3)
    body = {
        "predictions": rng.normal(size=(32, 10)).tolist(),
        "targets": (rng.uniform(size=(32, 10)) > 0.8).astype(int).tolist(),
        "params": {"from_logits": True},
        "outputs": ["loss", "per_sample", "gradients"],
    }
    with running_server() as server:
        url = server.url
        health = httpx.get(f"{url}/health").json()
        assert health["status"] == "ok"
        with httpx.Client(base_url=url) as http:
            over_tcp = [http.post("/loss/focal", json=body) for _ in range(3)]
        assert all(r.status_code == 200 for r in over_tcp)
        assert (
            httpx.post(f"{url}/loss/focal", content=b"{", headers={"content-type": "application/json"}).status_code
            == 400
        )
    assert server.returncode == 0, "SIGTERM should stop the server gracefully with status 0"
    assert over_tcp[0].json() == client.post("/loss/focal", json=body).json()
