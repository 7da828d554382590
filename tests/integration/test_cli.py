"""The `hypereal` command: admin operations with --json, and `serve` start-up behaviour."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hypereal.cli import main
from hypereal.errors import Unauthorized
from hypereal.keys import Principal
from hypereal.services import Services
from hypereal.settings import load_settings
from tests.conftest import ADMIN_HEADERS, Server, clean_environ, run_async, run_cli

KEY_PATTERN = re.compile(r"ck_[A-Za-z0-9_-]{32,}")


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, backend_settings: dict[str, Any]) -> dict[str, str]:
    for name in list(os.environ):
        if name.startswith("HYPEREAL_"):
            monkeypatch.delenv(name)
    env = {"HYPEREAL_DATA_DIR": str(tmp_path / "data")}
    env.update({f"HYPEREAL_{name.upper()}": value for name, value in backend_settings.items() if value})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def cli(cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> Callable[..., Outcome]:
    """`hypereal <args>` run in this process (fast), with the test's backend configured."""

    def run(*args: str) -> Outcome:
        code = 0
        try:
            main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


def authenticate(env: dict[str, str], key: str) -> Principal:
    async def check() -> Principal:
        services = Services.build(load_settings(environ=env))
        await services.start()
        try:
            return await services.keys.authenticate(key)
        finally:
            await services.close()

    return run_async(check())


def test_migrate(cli: Callable[..., Outcome]) -> None:
    assert cli("migrate", "--json").json() == {"migrated": True}
    text = cli("migrate")
    assert text.code == 0 and "latest schema" in text.out


def test_accounts_keys_and_credits(cli: Callable[..., Outcome], cli_env: dict[str, str]) -> None:
    account = cli("accounts", "create", "Acme", "--credits", "500", "--json").json()
    assert account["name"] == "Acme" and account["balance"] == 500
    assert account["id"] in cli("accounts", "list").out
    assert [a["id"] for a in cli("accounts", "list", "--json").json()["data"]] == [account["id"]]

    key = cli("keys", "create", account["id"], "--name", "ci", "--rate-limit", "30", "--json").json()
    assert KEY_PATTERN.fullmatch(key["key"]) and key["key"].startswith(key["prefix"])
    principal = authenticate(cli_env, key["key"])
    assert (principal.account_id, principal.rate_limit_per_hour) == (account["id"], 30)

    listed = cli("keys", "list", account["id"], "--json")
    assert [(k["id"], k["name"], k["revokedAt"]) for k in listed.json()["data"]] == [(key["id"], "ci", None)]
    assert key["key"] not in listed.out
    assert key["key"] not in cli("keys", "list", account["id"]).out

    assert cli("credits", "add", account["id"], "300", "--json").json() == {"balance": 800}
    assert cli("credits", "show", account["id"], "--json").json() == {"balance": 800}
    assert "800" in cli("credits", "show", account["id"]).out

    assert cli("keys", "revoke", key["id"], "--json").json() == {"revoked": key["id"]}
    with pytest.raises(Unauthorized):
        authenticate(cli_env, key["key"])
    assert cli("keys", "list", account["id"], "--json").json()["data"][0]["revokedAt"] is not None


def test_refusals_are_one_line_on_stderr(cli: Callable[..., Outcome]) -> None:
    account = cli("accounts", "create", "Small", "--json").json()
    too_small = cli("credits", "add", account["id"], "100")
    assert too_small.code == 1
    assert too_small.err.strip() == "hypereal: The minimum top-up is 200 credits"
    missing = cli("credits", "show", "acc_nope", "--json")
    assert (missing.code, missing.err.strip()) == (1, "hypereal: Account not found")
    assert cli("keys", "revoke", "key_nope").code == 1
    assert cli("keys", "create", "acc_nope").code == 1
    assert cli("credits", "show", account["id"], "--json").json() == {"balance": 0}


def test_models_list(cli: Callable[..., Outcome]) -> None:
    everything = cli("models", "list", "--json").json()["data"]
    ids = {model["id"] for model in everything}
    assert {"local-image", "veo-3-1-t2v"} <= ids
    videos = cli("models", "list", "--category", "video", "--json").json()["data"]
    assert videos and {model["category"] for model in videos} == {"video"}
    assert len(videos) < len(everything)
    text = cli("models", "list").out
    assert re.search(r"^local-image\s+image\s+available$", text, re.MULTILINE)


def test_the_installed_command_runs(tmp_path: Path) -> None:
    command = Path(sys.executable).parent / "hypereal"
    if not command.exists():
        pytest.skip("package not installed as a script next to this interpreter")
    import subprocess

    result = subprocess.run([str(command), "--help"], capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0
    for name in ("serve", "worker", "migrate", "accounts", "keys", "credits", "models"):
        assert name in result.stdout


# ---------------------------------------------------------------- serve


@pytest.mark.slow
def test_serve_on_an_empty_data_dir_prints_a_key_once(tmp_path: Path, start_server: Callable[..., Server]) -> None:
    data_dir = tmp_path / "fresh"
    first = start_server(data_dir=data_dir, admin_key=None)
    keys = sorted(set(KEY_PATTERN.findall(first.output())))
    assert len(keys) == 1  # shown in the announcement and in its curl example
    assert first.output().count("Created a development account") == 1
    mine = httpx.get(first.url + "/v1/account", headers={"Authorization": f"Bearer {keys[0]}"})
    assert mine.status_code == 200
    assert mine.json()["balance"] == 10_000
    first.stop()

    second = start_server(data_dir=data_dir, admin_key=None)
    assert KEY_PATTERN.findall(second.output()) == []
    assert httpx.get(second.url + "/v1/account", headers={"x-api-key": keys[0]}).status_code == 200
    second.stop()
    assert keys[0] not in second.output()

    # The second start says how to get a key again, and the command it gives works as printed.
    hint = re.search(r"For another key:\n\n    (.+)\n", second.output())
    assert hint, second.output()
    command = shlex.split(hint.group(1))
    assert command[:2] == [sys.executable, "-m"] and "keys" in command and "create" in command
    made = subprocess.run(command, env=clean_environ(), capture_output=True, text=True, timeout=120, check=True)
    another = KEY_PATTERN.findall(made.stdout)
    assert len(another) == 1 and another != keys
    third = start_server(data_dir=data_dir, admin_key=None)
    assert httpx.get(third.url + "/v1/account", headers={"x-api-key": another[0]}).json()["balance"] == 10_000


@pytest.mark.parametrize(
    ("variables", "created"),
    [
        ({"HYPEREAL_DEV_ACCOUNT_CREDITS": "0"}, None),  # 0 means none
        ({"HYPEREAL_DEV_ACCOUNT_CREDITS": "250"}, 250),
    ],
)
def test_the_development_account_on_sqlite_follows_the_setting(
    start_server: Callable[..., Server], variables: dict[str, str], created: int | None
) -> None:
    server = start_server(env=variables, admin_key=None)
    check_development_account(server, created)


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("variables", "created"),
    [
        ({}, None),  # production: nothing made, no key printed into the log
        ({"HYPEREAL_DEV_ACCOUNT_CREDITS": "0"}, None),
        ({"HYPEREAL_DEV_ACCOUNT_CREDITS": "300"}, 300),  # asked for explicitly
    ],
)
def test_serve_on_an_empty_postgresql_database_makes_an_account_only_when_asked(
    start_server: Callable[..., Server],
    new_postgres_url: Callable[[], str],
    variables: dict[str, str],
    created: int | None,
) -> None:
    server = start_server(env={"HYPEREAL_DATABASE_URL": new_postgres_url(), **variables})
    check_development_account(server, created)
    listed = httpx.get(server.url + "/api/v1/admin/accounts", headers=ADMIN_HEADERS).json()["data"]
    assert [account["balance"] for account in listed] == ([] if created is None else [created])


def check_development_account(server: Server, credits: int | None) -> None:
    keys = KEY_PATTERN.findall(server.output())
    if credits is None:
        assert keys == [] and "development account" not in server.output(), server.output()
        return
    assert f"Created a development account with {credits} credits" in server.output()
    mine = httpx.get(server.url + "/v1/account", headers={"Authorization": f"Bearer {keys[0]}"})
    assert mine.json()["balance"] == credits


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("HYPEREAL_PROT", "9000", "Unknown setting HYPEREAL_PROT"),
        ("HYPEREAL_ADMIN_KEY", "short-admin-key", "HYPEREAL_ADMIN_KEY: Value error, must be at least 24 characters"),
        ("HYPEREAL_DATABASE_URL", "mysql://root@localhost/h", "HYPEREAL_DATABASE_URL"),
    ],
)
def test_serve_refuses_bad_settings_before_listening(tmp_path: Path, variable: str, value: str, expected: str) -> None:
    result = run_cli("serve", "--port", "1", "--data-dir", str(tmp_path / "data"), env={variable: value})
    assert result.returncode == 2
    assert result.stderr.startswith("hypereal: ")
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    if variable == "HYPEREAL_ADMIN_KEY":
        assert value not in result.stderr
    assert not (tmp_path / "data").exists()  # refused before touching anything


def test_serving_freezes_the_start_up_heap_and_collects_young_objects_less_often() -> None:
    import gc

    from hypereal import cli

    before = gc.get_threshold()
    try:
        cli._settle_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == cli.YOUNG_COLLECTION_ALLOCATIONS > before[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
