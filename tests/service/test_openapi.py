"""The committed OpenAPI document is what the app serves (`make openapi` regenerates it)."""

import json
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from kernels import REGISTRY
from tests.server import running_server

COMMITTED = Path(__file__).parents[2] / "openapi" / "openapi.json"


def test_committed_document_is_current(client: TestClient) -> None:
    served = client.get("/openapi.json").json()
    assert json.loads(COMMITTED.read_text()) == served, "openapi/openapi.json is stale: run `make openapi`"


def test_every_loss_documents_its_request(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    for spec in REGISTRY:
        operation = document["paths"][f"/loss/{spec.name}"]["post"]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        model = schemas[ref.rsplit("/", 1)[1]]
        assert set(model["required"]) == {i.name for i in spec.required}
        assert model["additionalProperties"] is False
        for spec_input in spec.inputs:
            assert model["properties"][spec_input.name]["description"]
        params_ref = model["properties"]["params"]["$ref"].rsplit("/", 1)[1]
        assert set(schemas[params_ref].get("properties", {})) == set(spec.params.model_fields)


MIX = {"mix": {"terms": [{"loss": "dice"}, {"loss": "bce", "weight": 0.5}], "task": "segmentation"}}


@pytest.mark.server
def test_configured_composites_are_documented_and_nothing_else_changes(tmp_path: Path) -> None:
    """A composite from LOSSD_COMPOSITES is served and documented like a catalog loss; the rest
    of the document is the committed one."""
    env = {"LOSSD_PROVIDER": "cpu", "LOSSD_COMPOSITES": json.dumps(MIX), "LOSSD_DATA_DIR": str(tmp_path)}
    with running_server(env) as server:
        served = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
        masks = {"predictions": [[[0.2, 0.9]]], "targets": [[[0.0, 1.0]]]}
        computed = httpx.post(f"{server.url}/loss/mix", json=masks, timeout=30)
    assert computed.status_code == 200, computed.text
    operation = served["paths"].pop("/loss/mix")["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/MixRequest"}
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/LossResponse")
    request = served["components"]["schemas"].pop("MixRequest")
    assert set(request["required"]) == {"predictions", "targets"}
    served["components"]["schemas"].pop("MixParams", None)
    assert served == json.loads(COMMITTED.read_text())
