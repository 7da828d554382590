"""Several `hypereal serve` processes behind one key: shared limits, revocation, no secret leaks.

Two deployments, each started once for the module:
- embedded: two processes sharing a SQLite data directory (revocation by the epoch file);
- scaled: two processes sharing PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_HEADERS, Server, run_async, run_cli

pytestmark = pytest.mark.slow
SMALL_BODY_LIMIT = 65536


@dataclass
class Deployment:
    name: str
    servers: list[Server]
    cli_env: dict[str, str]
    database_url: str | None = None
    keys_shown: list[str] = field(default_factory=list)

    def admin(self, method: str, path: str, server: int = 0, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.servers[server].url + path, headers=ADMIN_HEADERS, timeout=30, **kwargs)

    def new_key(self, credits: int = 0, rate_limit_per_hour: int | None = None) -> tuple[str, str, str]:
        """(account id, key id, key) made through the admin API of the first server."""
        account = self.admin("POST", "/api/v1/admin/accounts", json={"name": "mp", "credits": credits}).json()
        body: dict[str, Any] = {"rate_limit_per_hour": rate_limit_per_hour} if rate_limit_per_hour else {}
        made = self.admin("POST", f"/api/v1/admin/accounts/{account['id']}/keys", json=body)
        assert made.status_code == 201, made.text
        self.keys_shown.append(made.json()["key"])
        return account["id"], made.json()["id"], made.json()["key"]


def account_status(server: Server, key: str) -> int:
    return httpx.get(server.url + "/v1/account", headers={"Authorization": f"Bearer {key}"}, timeout=30).status_code


@pytest.fixture(scope="module")
def embedded(start_server: Callable[..., Server], tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    data_dir = tmp_path_factory.mktemp("shared-data")
    env = {"HYPEREAL_LOG_LEVEL": "debug", "HYPEREAL_MAX_BODY_BYTES": str(SMALL_BODY_LIMIT)}
    # The first server creates the schema (and a development account); the second finds them.
    servers = [start_server(env=env, data_dir=data_dir) for _ in range(2)]
    return Deployment("embedded", servers, {"HYPEREAL_DATA_DIR": str(data_dir)})


@pytest.fixture(scope="module")
def scaled(start_server: Callable[..., Server], new_postgres_url: Callable[[], str], redis_url: str) -> Deployment:
    database_url = new_postgres_url()
    env = {
        "HYPEREAL_DATABASE_URL": database_url,
        "HYPEREAL_REDIS_URL": redis_url,
        "HYPEREAL_LOG_LEVEL": "debug",
        "HYPEREAL_MAX_BODY_BYTES": str(SMALL_BODY_LIMIT),
    }
    servers = [start_server(env=env) for _ in range(2)]
    cli_env = {"HYPEREAL_DATABASE_URL": database_url, "HYPEREAL_REDIS_URL": redis_url}
    return Deployment("scaled", servers, cli_env, database_url)


@pytest.fixture(params=["embedded", pytest.param("scaled", marks=[pytest.mark.postgres, pytest.mark.redis])])
def deployment(request: pytest.FixtureRequest) -> Deployment:
    result: Deployment = request.getfixturevalue(request.param)
    return result


@pytest.mark.postgres
@pytest.mark.redis
def test_two_processes_sharing_redis_allow_exactly_the_limit(scaled: Deployment) -> None:
    _, _, key = scaled.new_key(rate_limit_per_hour=20)
    statuses = [account_status(scaled.servers[n % 2], key) for n in range(20)]
    assert statuses == [200] * 20

    for server in scaled.servers:
        refused = httpx.get(server.url + "/api/v1/account", headers={"x-api-key": key})
        assert refused.status_code == 429
        assert refused.json()["error"] == "Rate limit exceeded"
        assert 1 <= int(refused.headers["retry-after"]) <= 3600
        assert refused.headers["x-ratelimit-remaining"] == "0"


@pytest.mark.postgres
@pytest.mark.redis
async def test_concurrent_requests_across_processes_share_one_limit(scaled: Deployment) -> None:
    _, _, key = scaled.new_key(rate_limit_per_hour=20)

    async def call(client: httpx.AsyncClient, server: Server) -> int:
        return (await client.get(server.url + "/v1/account", headers={"x-api-key": key})).status_code

    async with httpx.AsyncClient(timeout=30) as client:
        statuses = await asyncio.gather(*(call(client, scaled.servers[n % 2]) for n in range(50)))
    assert statuses.count(200) == 20
    assert statuses.count(429) == 30


def test_a_revoked_key_is_refused_by_the_other_process(deployment: Deployment) -> None:
    first, second = deployment.servers
    for _ in range(5):
        _, key_id, key = deployment.new_key()
        assert [account_status(second, key) for _ in range(2)] == [200, 200]  # cached there
        assert deployment.admin("DELETE", f"/api/v1/admin/keys/{key_id}").status_code == 204
        assert account_status(second, key) == 401
        assert account_status(first, key) == 401


def test_a_key_revoked_by_the_cli_is_refused_by_every_server(deployment: Deployment) -> None:
    _, key_id, key = deployment.new_key()
    assert [account_status(server, key) for server in deployment.servers] == [200, 200]
    result = run_cli("keys", "revoke", key_id, "--json", env=deployment.cli_env)
    assert result.returncode == 0, result.stderr
    assert [account_status(server, key) for server in deployment.servers] == [401, 401]


def test_concurrent_writes_from_both_processes(deployment: Deployment) -> None:
    account_id, _, key = deployment.new_key(credits=0)

    def top_up(n: int) -> int:
        response = deployment.admin(
            "POST", f"/v1/admin/accounts/{account_id}/credits", server=n % 2, json={"amount": 200}
        )
        return response.status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(top_up, range(40)))
    assert statuses == [200] * 40
    mine = httpx.get(deployment.servers[1].url + "/v1/account", headers={"x-api-key": key}).json()
    assert mine["balance"] == 40 * 200
    ledger = httpx.get(deployment.servers[0].url + "/v1/account/ledger?limit=200", headers={"x-api-key": key}).json()[
        "data"
    ]
    assert len(ledger) == 40
    assert sum(row["amount"] for row in ledger) == mine["balance"]


def test_oversized_bodies_are_refused_by_the_real_server(deployment: Deployment) -> None:
    account_id, _, _ = deployment.new_key()
    url = deployment.servers[0].url + f"/v1/admin/accounts/{account_id}/credits"
    declared = httpx.post(url, content=b" " * (SMALL_BODY_LIMIT + 1), headers=ADMIN_HEADERS)
    assert declared.status_code == 413
    assert declared.json()["limit"] == SMALL_BODY_LIMIT

    def chunked() -> Any:
        yield b'{"amount": 500, "pad": "'
        for _ in range(100):
            yield b"x" * 4096
        yield b'"}'

    streamed = httpx.post(url, content=chunked(), headers=ADMIN_HEADERS)
    assert streamed.status_code == 413
    assert streamed.json()["error"].startswith("Request body larger than")
    balance = deployment.admin("GET", f"/v1/admin/accounts/{account_id}").json()["balance"]
    assert balance == 0


async def _postgres_text(database_url: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        chunks = []
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        for row in tables:
            chunks.extend(str(tuple(r)) for r in await conn.fetch(f'SELECT * FROM "{row["tablename"]}"'))
        return "\n".join(chunks)
    finally:
        await conn.close()


def _stored_bytes(deployment: Deployment) -> bytes:
    if deployment.database_url:
        return run_async(_postgres_text(deployment.database_url)).encode()
    data_dir = Path(deployment.cli_env["HYPEREAL_DATA_DIR"])
    return b"".join(path.read_bytes() for path in data_dir.glob("hypereal.db*") if path.is_file())


def test_no_key_in_the_database_or_the_logs(deployment: Deployment) -> None:
    _, key_id, key = deployment.new_key()
    for server in deployment.servers:
        assert account_status(server, key) == 200
        assert httpx.get(server.url + "/v1/nowhere", headers={"x-api-key": key}).status_code == 404
        assert httpx.get(server.url + "/v1/account", headers={"x-api-key": key + "x"}).status_code == 401
    deployment.admin("DELETE", f"/api/v1/admin/keys/{key_id}")
    assert account_status(deployment.servers[1], key) == 401

    stored = _stored_bytes(deployment)
    logs = "\n".join(server.output() for server in deployment.servers)
    assert "DEBUG" in logs or "debug" in logs.lower()  # the servers really logged at debug level
    for shown in deployment.keys_shown:
        assert shown.encode() not in stored
        assert shown[len("ck_") :].encode() not in stored
        assert shown not in logs
