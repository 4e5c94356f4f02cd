"""The error responses the routes document in OpenAPI, as they are sent: problem details as
``application/problem+json`` on the REST endpoints, ``{"error": ...}`` JSON under /v2."""

from __future__ import annotations

from typing import Any

from service.problems import PROBLEM_JSON

Responses = dict[int | str, dict[str, Any]]

PROBLEM_SCHEMA = {"$ref": "#/components/schemas/Problem"}
"""service.problems.Problem; app.openapi adds it to the document's components."""
V2_ERROR_SCHEMA = {
    "title": "V2Error",
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}


def problems(described: dict[int, str]) -> Responses:
    """Problem-details responses, by status with their descriptions."""
    content = {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}
    return {status: {"description": text, "content": content} for status, text in described.items()}


def v2_errors(described: dict[int, str]) -> Responses:
    """Error responses of the Open Inference Protocol, by status with their descriptions."""
    content = {"application/json": {"schema": V2_ERROR_SCHEMA}}
    return {status: {"description": text, "content": content} for status, text in described.items()}
