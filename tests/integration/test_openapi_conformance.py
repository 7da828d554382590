"""The OpenAPI document is the truth: schemathesis fuzzes a running server from its own /openapi.json.

Every operation of the document gets positive and negative requests (the document's
examples, schemathesis's coverage cases at the edges of each schema and with methods the
path does not take, then a few generated ones) and every answer must be no 5xx, of a
documented status and content type, and match the documented schema. The run is
derandomized (a fixed seed), so a failure reproduces; it is not shrunk, which against a
server costs more requests than the run itself, so a failure is reported as found.

The server is a fresh SQLite one with no worker and HYPEREAL_SYNC_WAIT_SECONDS=0: media
requests are validated, charged and queued, and the synchronous endpoints answer 202 at
once instead of rendering. Their 200 answers are checked on a server with a worker in
`test_finished_generations_answer_as_documented`, one small request per endpoint, and the
admin answers about real accounts and keys (the fuzzer's ids never exist) in
`test_admin_answers_with_real_accounts_and_keys_are_documented`.
Media and chat requests name the built-in local models (`local-*`, `local-echo`), so the
generated requests that are valid run through the whole path without any upstream.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
from collections.abc import Callable
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ADMIN_HEADERS, Server

pytestmark = pytest.mark.slow

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MEDIA_BODIES = {
    "ImageRequest": ("image", "image-edit"),
    "VideoRequest": ("video",),
    "AudioRequest": ("audio",),
    "ThreeDRequest": ("3d",),
}
CHAT_BODIES = (
    "NativeChatRequest",
    "ChatCompletionRequest",
    "ResponsesRequest",
    "MessagesRequest",
    "CountTokensRequest",
)
FUNDS = 10_000_000
GENEROUS_LIMIT = 10_000_000


def _funded_key(server: Server) -> str:
    account = httpx.post(
        f"{server.url}/api/v1/admin/accounts", json={"name": "schemathesis", "credits": FUNDS}, headers=ADMIN_HEADERS
    )
    assert account.status_code == 201, account.text
    key = httpx.post(
        f"{server.url}/api/v1/admin/accounts/{account.json()['id']}/keys",
        json={"name": "schemathesis", "rate_limit_per_hour": GENEROUS_LIMIT},
        headers=ADMIN_HEADERS,
    )
    assert key.status_code == 201, key.text
    return str(key.json()["key"])


def _local_models(server: Server, categories: tuple[str, ...]) -> list[str]:
    found = []
    for category in categories:
        listing = httpx.get(f"{server.url}/api/v1/models", params={"category": category}).json()["data"]
        found += [model["id"] for model in listing if model["id"].startswith("local-")]
    return found


def _aimed_at_local_models(document: dict[str, Any], server: Server) -> dict[str, Any]:
    """The document with each body's `model` narrowed to the local models, examples included."""
    aimed = copy.deepcopy(document)
    schemas = aimed["components"]["schemas"]
    models = {name: _local_models(server, categories) for name, categories in MEDIA_BODIES.items()}
    models.update({name: ["local-echo"] for name in CHAT_BODIES})
    for name, choices in models.items():
        schemas[name]["properties"]["model"] = {"enum": choices}
    for path_item in aimed["paths"].values():
        for operation in path_item.values():
            media = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            name = media.get("schema", {}).get("$ref", "").rpartition("/")[2]
            if name not in models:
                continue  # a body without a model (a key's provider preferences)
            for example in media.get("examples", {}).values():
                if example["value"].get("model") not in models[name]:
                    example["value"]["model"] = models[name][0]
    return aimed


def _idempotency_key_per_body(case: schemathesis.Case) -> None:
    """A generated Idempotency-Key made specific to the body, so a repeated body is a replay.

    Left as generated, one key ("0") would meet every other body and answer 409 before the
    body is even read; the reuse refusal has its own tests (test_idempotency.py).
    """
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and key.strip() and len(key) <= 100:
        digest = hashlib.sha256(repr(case.body).encode()).hexdigest()[:64]
        case.headers["Idempotency-Key"] = f"{key}-{digest}"


@pytest.fixture(scope="module")
def fuzzed_server(start_server: Callable[..., Server]) -> Server:
    return start_server(env={"HYPEREAL_SYNC_WAIT_SECONDS": "0"})


@pytest.fixture(scope="module")
def account_key(fuzzed_server: Server) -> str:
    return _funded_key(fuzzed_server)


@pytest.fixture(scope="module")
def api_schema(fuzzed_server: Server) -> schemathesis.BaseSchema:
    document = httpx.get(f"{fuzzed_server.url}/openapi.json").json()
    config = schemathesis.Config.from_dict(
        {
            "seed": 20_240_611,
            "base-url": fuzzed_server.url,
            "request-timeout": 60,
            "generation": {
                "mode": "all",
                "max-examples": 20,
                "deterministic": True,
                "database": "none",
                "with-security-parameters": False,
            },
        }
    )
    return schemathesis.openapi.from_dict(_aimed_at_local_models(document, fuzzed_server), config=config)


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # schemathesis (4.32) names each operation's subtest by rewriting `node._nodeid`, which
    # pytest 9 no longer has; give it the attribute to read and write.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@hypothesis.settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
)
def test_every_answer_is_the_one_the_document_gives(case: schemathesis.Case, account_key: str) -> None:
    admin = case.path.startswith("/api/v1/admin/")
    headers = ADMIN_HEADERS if admin else {"Authorization": f"Bearer {account_key}"}
    _idempotency_key_per_body(case)
    case.call_and_validate(headers=headers, checks=CHECKS)


# ---------------------------------------------------------------- answers the fuzzed server never gives


def _png_data_uri() -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (48, 48), (200, 40, 40)).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def _caller(server: Server, headers: dict[str, str]) -> Callable[..., dict[str, Any]]:
    """`call(method, path, status, **case parts)`: the answer, checked against the document."""
    document = schemathesis.openapi.from_url(f"{server.url}/openapi.json")

    def call(method: str, path: str, status: int, **parts: Any) -> dict[str, Any]:
        operation = document[path][method]
        response = operation.Case(**parts).call(headers=headers, timeout=120)
        assert response.status_code == status, (method, path, response.text)
        operation.validate_response(response)
        answer: dict[str, Any] = response.json() if response.content else {}
        return answer

    return call


def test_admin_answers_with_real_accounts_and_keys_are_documented(fuzzed_server: Server) -> None:
    call = _caller(fuzzed_server, ADMIN_HEADERS)

    def post(path: str, status: int, body: dict[str, Any], **parts: Any) -> dict[str, Any]:
        return call("POST", path, status, body=body, media_type="application/json", **parts)

    created = post("/api/v1/admin/accounts", 201, {"name": "documented", "credits": 500})
    account = {"account_id": created["id"]}
    call("GET", "/api/v1/admin/accounts/{account_id}", 200, path_parameters=account)
    key = post("/api/v1/admin/accounts/{account_id}/keys", 201, {"rate_limit_per_hour": 50}, path_parameters=account)
    assert len(call("GET", "/api/v1/admin/accounts/{account_id}/keys", 200, path_parameters=account)["data"]) == 1
    topped = post("/api/v1/admin/accounts/{account_id}/credits", 200, {"amount": 300}, path_parameters=account)
    assert topped == {"balance": 800}
    call("DELETE", "/api/v1/admin/keys/{key_id}", 204, path_parameters={"key_id": key["id"]})
    call("DELETE", "/api/v1/admin/keys/{key_id}", 404, path_parameters={"key_id": "key_nope"})


def test_finished_generations_answer_as_documented(start_server: Callable[..., Server]) -> None:
    server = start_server(worker=True)
    call = _caller(server, {"Authorization": f"Bearer {_funded_key(server)}"})

    def generate(path: str, body: dict[str, Any]) -> dict[str, Any]:
        return call("POST", path, 200, body=body, media_type="application/json")

    generate("/api/v1/images/generate", {"model": "local-image", "prompt": "a red kite", "resolution": "512"})
    speech = generate(
        "/api/v1/audio/generate", {"model": "local-tts", "input": {"text": "Hello there.", "format": "wav"}}
    )
    recording = httpx.get(speech["outputUrl"]).content
    heard = "data:audio/wav;base64," + base64.b64encode(recording).decode()
    transcript = generate("/api/v1/audio/generate", {"model": "local-asr", "input": {"audio": heard}})
    assert "segments" in transcript
    generate("/api/v1/3d/generate", {"model": "local-3d-relief", "input": {"image": _png_data_uri(), "resolution": 32}})

    # The jobs behind them, finished, as polling and listing show them.
    job = {"job_id": transcript["jobId"]}
    assert call("GET", "/api/v1/jobs/{job_id}", 200, path_parameters=job)["status"] == "completed"
    assert len(call("GET", "/api/v1/jobs", 200, query={"limit": 10})["data"]) == 4
    call("POST", "/api/v1/jobs/{job_id}/cancel", 409, path_parameters=job)
    call("GET", "/api/v1/jobs/{job_id}/deliveries", 200, path_parameters=job)
    call("POST", "/api/v1/jobs/{job_id}/deliveries/retry", 409, path_parameters=job)
