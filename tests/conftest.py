"""Fixtures shared by the whole suite.

Backends
    database_url        Parametrised: "sqlite" (a file in the test's temp dir) and "postgres"
                        (TEST_DATABASE_URL, e.g. postgresql://postgres@127.0.0.1:5432/test).
                        The postgres variant runs in a database created for this test session
                        and emptied (all tables truncated) before each test; it carries the
                        `postgres` mark and is skipped, saying why, when TEST_DATABASE_URL is
                        unset or the server does not answer (with TEST_REQUIRE_SERVICES=1, as
                        in CI, it fails instead).
    redis_url           TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/0), skipped likewise.
                        Nothing is flushed: rate-limit counters are keyed by random key ids,
                        so concurrent runs against one server do not meet.
    new_postgres_url()  Session-scoped factory: a new, empty PostgreSQL database (dropped at
                        the end of the session), for servers that live for a whole module.
    backend_settings    {"database_url": ..., "redis_url": ...} of the current `database_url`
                        variant: the embedded stack on "sqlite", PostgreSQL + Redis (when
                        TEST_REDIS_URL answers) on "postgres".

Application
    make_settings(**overrides) -> Settings     data dir in tmp_path, the current backend, ADMIN_KEY;
                                               never reads os.environ.
    settings                                   make_settings()
    make_services(settings) -> Services        built (with the built-in catalog parsed once per session
                                               unless settings.catalog is set) and started; closed
                                               at teardown.
    services                                   await make_services()
    make_client(services) -> httpx.AsyncClient the app in process (no worker), base http://test.
    client                                     await make_client(services)
    admin_headers                              {"Authorization": "Bearer ADMIN_KEY"}
    make_account(credits=1000, rate_limit_per_hour=None, name=..., services=<services>) -> TestAccount
                                               an account, its balance and one key, created
                                               through the services (no HTTP); `.headers`
                                               authenticate as it.

Processes
    start_server(env=None, data_dir=None, args=(), admin_key=ADMIN_KEY, worker=False) -> Server
        Module-scoped factory: runs `python -m hypereal.cli serve` on a free port with only the
        given HYPEREAL_* variables (the test process's own are dropped), waits for /healthz,
        and stops every server it started when the module ends. `Server.url`,
        `Server.output()` (stdout and stderr so far), `Server.stop()`.
    run_cli(*args, env=None) -> subprocess.CompletedProcess    the real command in a subprocess.

Plain helpers (`from tests.conftest import ...`): ADMIN_KEY, ADMIN_HEADERS, TestAccount,
create_test_account(services, ...), run_async(coro) (from sync code, in its own thread),
free_port(), clean_environ(env), launch_server(directory, ...) (like start_server, unmanaged),
unavailable(reason) (skips a test whose counterpart is missing; fails it when
TEST_REQUIRE_SERVICES=1, as in CI),
serving(app, protocol=HttpProtocol) (async context manager: an ASGI app served by uvicorn in
this process on the server's protocol; yields the port).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from hypereal.app import create_app
from hypereal.catalog import Catalog, load_catalog
from hypereal.http_server import HttpProtocol
from hypereal.services import Services
from hypereal.settings import Settings, load_settings

ADMIN_KEY = "test-admin-key-" + "0123456789abcdef" * 2
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}
SERVER_START_SECONDS = 60.0
SERVICES_CLOSE_SECONDS = 30.0
T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, in a thread of its own.

    A thread keeps it clear of the event loop pytest-asyncio manages for the tests.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


# ---------------------------------------------------------------- PostgreSQL


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1).replace("postgres://", "postgresql://", 1)


async def _pg_execute(url: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(url), timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _pg_truncate_all(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_asyncpg_dsn(url), timeout=5)
    try:
        tables = [
            row["tablename"]
            for row in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            if row["tablename"] != "alembic_version"
        ]
        if tables:
            quoted = ", ".join(f'"{table}"' for table in tables)
            # A connection left open by an earlier test would block TRUNCATE for ever; say who.
            await conn.execute("SET lock_timeout = '30s'")
            try:
                await conn.execute(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE")
            except asyncpg.LockNotAvailableError:
                holders = await conn.fetch(
                    "SELECT pid, state, left(query, 120) AS query FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                raise RuntimeError(f"Could not empty the test database; connections still open: {holders}") from None
    finally:
        await conn.close()


@dataclass
class PostgresServer:
    admin_url: str
    """TEST_DATABASE_URL: a database we may connect to in order to create others."""
    created: list[str] = field(default_factory=list)
    session_tag: str = field(default_factory=lambda: f"{os.getpid()}_{secrets.token_hex(3)}")

    def new_database(self) -> str:
        name = f"hypereal_test_{self.session_tag}_{len(self.created)}"
        run_async(_pg_execute(self.admin_url, f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return _with_database(self.admin_url, name)

    def drop_all(self) -> None:
        for name in self.created:
            with contextlib.suppress(Exception):
                run_async(_pg_execute(self.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def unavailable(reason: str) -> NoReturn:
    """Skip a test whose server is missing; in CI (TEST_REQUIRE_SERVICES=1) fail it instead."""
    if os.environ.get("TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (TEST_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(reason)


def _reachable(url: str, default_port: int) -> str | None:
    """None if a TCP connection to the URL's host and port opens, else the reason it did not."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=2):
            return None
    except OSError as exc:
        return f"{host}:{port} is unreachable ({exc.strerror or exc})"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        unavailable("PostgreSQL tests need TEST_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    problem = _reachable(url, 5432)
    if problem:
        unavailable(f"PostgreSQL at TEST_DATABASE_URL: {problem}")
    try:
        run_async(_pg_execute(url, "SELECT 1"))
    except Exception as exc:
        unavailable(f"PostgreSQL at TEST_DATABASE_URL refused the connection: {exc}")
    server = PostgresServer(url)
    try:
        yield server
    finally:
        server.drop_all()


@pytest.fixture(scope="session")
def new_postgres_url(postgres_server: PostgresServer) -> Callable[[], str]:
    """A factory of new, empty PostgreSQL databases (dropped when the session ends)."""
    return postgres_server.new_database


@pytest.fixture(scope="session")
def _postgres_session_database(postgres_server: PostgresServer) -> str:
    return postgres_server.new_database()


# ---------------------------------------------------------------- Redis


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        unavailable("Redis tests need TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/0)")
    problem = _reachable(url, 6379)
    if problem:
        unavailable(f"Redis at TEST_REDIS_URL: {problem}")
    return url


def _optional_redis_url() -> str | None:
    url = os.environ.get("TEST_REDIS_URL")
    if url and _reachable(url, 6379) is None:
        return url
    return None


# ---------------------------------------------------------------- the backend of a test


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hypereal.db'}"
    url: str = request.getfixturevalue("_postgres_session_database")
    run_async(_pg_truncate_all(url))
    return url


@pytest.fixture
def backend_settings(database_url: str) -> dict[str, Any]:
    if database_url.startswith("sqlite"):
        return {"database_url": database_url}
    return {"database_url": database_url, "redis_url": _optional_redis_url()}


@pytest.fixture
def make_settings(tmp_path: Path, backend_settings: dict[str, Any]) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"data_dir": tmp_path / "data", "admin_key": ADMIN_KEY, **backend_settings}
        values.update(overrides)
        return load_settings(environ={}, **values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture(scope="session")
def builtin_catalog() -> Catalog:
    """The built-in catalog, parsed once: it is immutable, and parsing it is most of a start-up."""
    return load_catalog()


@pytest.fixture
async def make_services(builtin_catalog: Catalog) -> AsyncIterator[Callable[..., Awaitable[Services]]]:
    started: list[Services] = []

    async def make(settings: Settings) -> Services:
        services = Services.build(settings, catalog=builtin_catalog if settings.catalog is None else None)
        await services.start()
        started.append(services)
        return services

    try:
        yield make
    finally:
        for services in reversed(started):
            try:
                await asyncio.wait_for(services.close(), SERVICES_CLOSE_SECONDS)
            except TimeoutError:
                pending = [task.get_name() for task in asyncio.all_tasks() if task is not asyncio.current_task()]
                pytest.fail(
                    f"Services.close() did not finish within {SERVICES_CLOSE_SECONDS:g} s; tasks still running:"
                    f" {', '.join(sorted(pending)) or 'none'}",
                    pytrace=False,
                )


@pytest.fixture
async def services(settings: Settings, make_services: Callable[..., Awaitable[Services]]) -> Services:
    return await make_services(settings)


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[[Services], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def make(services: Services) -> httpx.AsyncClient:
        app = create_app(services.settings, services=services, run_worker=False)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.aclose()


@pytest.fixture
def client(services: Services, make_client: Callable[[Services], httpx.AsyncClient]) -> httpx.AsyncClient:
    return make_client(services)


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return dict(ADMIN_HEADERS)


@dataclass(frozen=True)
class TestAccount:
    __test__ = False  # not a test class, despite the name

    id: str
    key: str
    key_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def create_test_account(
    services: Services, credits: int = 1000, rate_limit_per_hour: int | None = None, name: str = "Test account"
) -> TestAccount:
    account = await services.accounts.create_account(name, credits)
    record, raw = await services.accounts.create_key(account.id, "test", rate_limit_per_hour)
    return TestAccount(id=account.id, key=raw, key_id=record.id)


@pytest.fixture
def make_account(services: Services) -> Callable[..., Awaitable[TestAccount]]:
    async def make(
        credits: int = 1000,
        rate_limit_per_hour: int | None = None,
        name: str = "Test account",
        services: Services = services,
    ) -> TestAccount:
        return await create_test_account(services, credits, rate_limit_per_hour, name)

    return make


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serving(app: Any, protocol: type[asyncio.Protocol] = HttpProtocol) -> AsyncIterator[int]:
    """`app` served by uvicorn in this process on `protocol`; yields the port."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http=protocol, log_level="error"))
    running = asyncio.create_task(server.serve())
    try:
        while not server.started:  # uvicorn offers a flag, not an event
            if running.done():
                running.result()
            await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        await running


def clean_environ(env: dict[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without HYPEREAL_* settings, plus `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("HYPEREAL_")}
    base["PYTHONUNBUFFERED"] = "1"
    base.update(env or {})
    return base


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`hypereal <args>` in a subprocess, with only the HYPEREAL_* variables given."""
    return subprocess.run(
        [sys.executable, "-m", "hypereal.cli", *args],
        env=clean_environ(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    data_dir: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def launch_server(
    directory: Path,
    env: dict[str, str] | None = None,
    data_dir: Path | None = None,
    args: Sequence[str] = (),
    admin_key: str | None = ADMIN_KEY,
    worker: bool = False,
) -> Server:
    port = free_port()
    data_dir = data_dir or directory / f"data-{port}"
    log_path = directory / f"server-{port}.log"
    variables = dict(env or {})
    if admin_key is not None:
        variables.setdefault("HYPEREAL_ADMIN_KEY", admin_key)
    command = [sys.executable, "-m", "hypereal.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--data-dir", str(data_dir), *([] if worker else ["--no-worker"]), *args]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=clean_environ(variables), stdout=log, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process, log_path, data_dir)
    deadline = time.monotonic() + SERVER_START_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"hypereal serve exited with {process.returncode}:\n{server.output()}")
        try:
            if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"hypereal serve did not answer /healthz:\n{server.output()}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    directory = tmp_path_factory.mktemp("servers")
    servers: list[Server] = []

    def start(
        env: dict[str, str] | None = None,
        data_dir: Path | None = None,
        args: Sequence[str] = (),
        admin_key: str | None = ADMIN_KEY,
        worker: bool = False,
    ) -> Server:
        server = launch_server(directory, env, data_dir, args, admin_key, worker)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
