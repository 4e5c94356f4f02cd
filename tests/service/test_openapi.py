"""The committed OpenAPI document is what the app serves (`make openapi` regenerates it)."""

import json
from pathlib import Path

from fastapi.testclient import TestClient

from kernels import REGISTRY

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
        assert set(model["required"]) == {i.name for i in spec.inputs}
        assert model["additionalProperties"] is False
        for spec_input in spec.inputs:
            assert model["properties"][spec_input.name]["description"]
        params_ref = model["properties"]["params"]["$ref"].rsplit("/", 1)[1]
        assert set(schemas[params_ref].get("properties", {})) == set(spec.params.model_fields)
