"""The OpenAPI document's shape: what a client generator reads before it ever calls the server.

That the answers really match it is the schemathesis run's job
(tests/integration/test_openapi_conformance.py); this checks, fast, that nothing is left
undescribed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest

from hypereal.app import create_app
from hypereal.settings import load_settings

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data_dir: Path = tmp_path_factory.mktemp("data")
    return create_app(load_settings(environ={}, data_dir=data_dir)).openapi()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_no_operation_documents_fastapis_422(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        assert "422" not in operation["responses"], (method, path)
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_every_post_declares_its_json_body(document: dict[str, Any]) -> None:
    posts = [(path, operation) for method, path, operation in operations(document) if method == "POST"]
    assert len(posts) > 10
    for path, operation in posts:
        if path.endswith(("/cancel", "/retry", "/rotate")):
            assert "requestBody" not in operation, path  # nothing to send
            continue
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        assert schema["$ref"].removeprefix("#/components/schemas/") in document["components"]["schemas"], path


def test_every_success_has_a_schema_and_every_error_its_shape(document: dict[str, Any]) -> None:
    shapes = {"openai": "OpenAIError", "anthropic": "AnthropicError"}
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if status == "204" or "text/csv" in response.get("content", {}):
                continue  # nothing, or a CSV export
            content = response["content"]["application/json"]
            assert content["schema"] != {"type": "string"}, (method, path, status)
            if status.startswith("4") or status.startswith("5"):
                expected = shapes.get(operation["tags"][0], "Error")
                refs = [content["schema"], *content["schema"].get("anyOf", [])]
                assert any(ref.get("$ref", "").endswith("/" + expected) for ref in refs), (method, path, status)


def test_operations_with_a_path_parameter_document_404(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        if "{" in path and not path.startswith("/api/v1/models/"):  # an unknown model id is a 400
            assert "404" in operation["responses"], (method, path)


def test_the_chat_routes_document_their_streams(document: dict[str, Any]) -> None:
    for path in ("/api/v1/chat", "/api/v1/chat/completions", "/api/v1/responses", "/api/v1/messages"):
        content = document["paths"][path]["post"]["responses"]["200"]["content"]
        assert set(content) == {"application/json", "text/event-stream"}
        assert content["text/event-stream"]["itemSchema"]["required"] == ["data"]


def test_bounds_the_api_enforces_are_in_the_document(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert schemas["ChatCompletionRequest"]["properties"]["n"]["maximum"] == 128
    assert schemas["TopUp"]["properties"]["amount"]["minimum"] == 200
    ledger = document["paths"]["/api/v1/account/ledger"]["get"]["parameters"]
    limit = next(parameter for parameter in ledger if parameter["name"] == "limit")["schema"]
    assert (limit["minimum"], limit["maximum"]) == (1, 200)


def test_every_example_in_the_document_fits_its_schema(document: dict[str, Any]) -> None:
    def check(schema: dict[str, Any], example: Any, where: str) -> None:
        validator = jsonschema_rs.Draft202012Validator({**schema, "components": document["components"]})
        errors = [error.message for error in validator.iter_errors(example)]
        assert not errors, (where, errors)

    checked = 0
    for name, schema in document["components"]["schemas"].items():
        for example in schema.get("examples", []):
            check({"$ref": f"#/components/schemas/{name}"}, example, name)
            checked += 1
    for method, path, operation in operations(document):
        bodies = [operation.get("requestBody", {}), *operation["responses"].values()]
        for body in bodies:
            for media in body.get("content", {}).values():
                for example in [media["example"]] if "example" in media else []:
                    check(media["schema"], example, f"{method} {path}")
                    checked += 1
                for named in media.get("examples", {}).values():
                    check(media["schema"], named["value"], f"{method} {path}")
                    checked += 1
    assert checked > 50


async def test_the_docs_page_loads_nothing_from_elsewhere(tmp_path: Path) -> None:
    app = create_app(load_settings(environ={}, data_dir=tmp_path))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        page = (await client.get("/docs")).text
        assert re.findall(r"""(?:src|href)=["']?(?:https?:)?//""", page) == []
        for name, kind in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "css")):
            assert f"/docs/assets/{name}" in page
            asset = await client.get(f"/docs/assets/{name}")
            assert asset.status_code == 200 and kind in asset.headers["content-type"] and len(asset.content) > 100_000
        assert (await client.get("/docs/assets/LICENSE")).status_code == 404
        assert (await client.get("/docs/assets/..%2Fswagger-ui%2FLICENSE")).status_code == 404
