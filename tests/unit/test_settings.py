"""Typed settings from HYPEREAL_* variables: parsed, checked, and refused with clear messages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from hypereal.settings import (
    README_BEGIN,
    README_END,
    Settings,
    SettingsError,
    load_settings,
    settings_table,
    with_settings_table,
)

STRONG_ADMIN_KEY = "a" * 24


def test_defaults_need_no_environment() -> None:
    settings = load_settings(environ={})
    assert settings.is_sqlite
    assert settings.effective_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.effective_database_url.endswith("/hypereal.db")
    assert settings.default_rate_limit_per_hour == 1000
    assert settings.max_body_bytes == 32 * 1024 * 1024
    assert settings.redis_url is None
    assert settings.admin_key is None


def test_environment_values_are_typed() -> None:
    settings = load_settings(
        environ={
            "HYPEREAL_PORT": "9100",
            "HYPEREAL_WORKER": "false",
            "HYPEREAL_DATA_DIR": "/srv/hypereal",
            "HYPEREAL_MAX_BODY_BYTES": "4096",
            "HYPEREAL_KEY_CACHE_SECONDS": "2.5",
            "HYPEREAL_DATABASE_POOL_SIZE": "3",
        }
    )
    assert settings.database_pool_size == 3
    assert settings.port == 9100
    assert settings.worker is False
    assert settings.data_dir == Path("/srv/hypereal")
    assert settings.max_body_bytes == 4096
    assert settings.key_cache_seconds == 2.5


def test_explicit_overrides_win_and_none_means_not_given() -> None:
    settings = load_settings(environ={"HYPEREAL_PORT": "9100", "HYPEREAL_HOST": "0.0.0.0"}, port=9200, host=None)
    assert settings.port == 9200
    assert settings.host == "0.0.0.0"
    assert settings.effective_public_url == "http://127.0.0.1:9200"


def test_unknown_variable_is_named_in_the_refusal() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"HYPEREAL_DATABSE_URL": "postgresql://db/x"})
    message = str(caught.value)
    assert "HYPEREAL_DATABSE_URL" in message
    assert "HYPEREAL_DATABASE_URL" in message  # the list of known settings helps spot the typo


def test_client_side_variables_are_tolerated() -> None:
    settings = load_settings(environ={"HYPEREAL_API_KEY": "ck_x", "HYPEREAL_BASE_URL": "http://h/v1"})
    assert settings.port == 8000


def test_variables_without_our_prefix_are_ignored() -> None:
    assert load_settings(environ={"PORT": "1", "DATABASE_URL": "mysql://x"}).port == 8000


def test_short_admin_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"HYPEREAL_ADMIN_KEY": "hunter2-secret"})
    message = str(caught.value)
    assert "HYPEREAL_ADMIN_KEY" in message
    assert "24 characters" in message
    assert "hunter2-secret" not in message


def test_strong_admin_key_is_kept_secret_in_repr() -> None:
    settings = load_settings(environ={"HYPEREAL_ADMIN_KEY": STRONG_ADMIN_KEY})
    assert settings.admin_key is not None
    assert settings.admin_key.get_secret_value() == STRONG_ADMIN_KEY
    assert STRONG_ADMIN_KEY not in repr(settings)


@pytest.mark.parametrize(
    ("url", "effective"),
    [
        ("postgresql://u@db:5432/h", "postgresql+asyncpg://u@db:5432/h"),
        ("postgres://u@db/h", "postgresql+asyncpg://u@db/h"),
        ("postgresql+asyncpg://u@db/h", "postgresql+asyncpg://u@db/h"),
        ("sqlite:////var/lib/h.db", "sqlite+aiosqlite:////var/lib/h.db"),
    ],
)
def test_database_urls_get_the_async_driver(url: str, effective: str) -> None:
    settings = load_settings(environ={"HYPEREAL_DATABASE_URL": url})
    assert settings.effective_database_url == effective
    assert settings.is_sqlite == effective.startswith("sqlite")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HYPEREAL_DATABASE_URL", "mysql://root@db/h"),
        ("HYPEREAL_REDIS_URL", "http://cache:6379"),
        ("HYPEREAL_PORT", "70000"),
        ("HYPEREAL_PORT", "eighty"),
        ("HYPEREAL_PUBLIC_URL", "example.com/no-scheme"),
        ("HYPEREAL_WEBHOOK_RETRY_SCHEDULE", "5,soon"),
        ("HYPEREAL_WEBHOOK_RETRY_SCHEDULE", "5,-1"),
        ("HYPEREAL_LOG_LEVEL", "verbose"),
        ("HYPEREAL_MAX_BODY_BYTES", "10"),
        ("HYPEREAL_DEFAULT_RATE_LIMIT_PER_HOUR", "0"),
        ("HYPEREAL_DATABASE_POOL_SIZE", "0"),
    ],
)
def test_invalid_values_are_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={variable: value})
    assert variable in str(caught.value)


def test_s3_storage_needs_a_bucket() -> None:
    with pytest.raises(SettingsError, match="HYPEREAL_S3_BUCKET"):
        load_settings(environ={"HYPEREAL_STORAGE": "s3"})
    assert load_settings(environ={"HYPEREAL_STORAGE": "s3", "HYPEREAL_S3_BUCKET": "out"}).s3_bucket == "out"


def test_derived_values() -> None:
    settings = load_settings(
        environ={
            "HYPEREAL_PUBLIC_URL": "https://api.example.com/",
            "HYPEREAL_OUTBOUND_ALLOW": " 10.0.0.0/8, internal.example ,",
            "HYPEREAL_WEBHOOK_RETRY_SCHEDULE": "1,2.5,60",
        }
    )
    assert settings.effective_public_url == "https://api.example.com"
    assert settings.outbound_allow_list == ("10.0.0.0/8", "internal.example")
    assert settings.webhook_schedule == (1.0, 2.5, 60.0)


def test_settings_are_frozen_and_reject_unknown_fields() -> None:
    settings = load_settings(environ={})
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Settings.model_validate({"prot": 1})


@pytest.mark.parametrize(
    ("url", "prefix"),
    [
        ("redis://cache:6379/0", "hypereal:0:"),
        ("redis://cache:6379", "hypereal:0:"),
        ("redis://cache:6379/3", "hypereal:3:"),
        ("rediss://user:pw@cache:6380/12", "hypereal:12:"),
        ("redis://cache:6379?db=5", "hypereal:5:"),
        ("unix:///run/redis.sock?db=2", "hypereal:2:"),
        ("unix:///run/redis.sock", "hypereal:0:"),
    ],
)
def test_the_redis_prefix_defaults_to_one_per_database_number(url: str, prefix: str) -> None:
    assert load_settings(environ={"HYPEREAL_REDIS_URL": url}).effective_redis_prefix == prefix
    given = load_settings(environ={"HYPEREAL_REDIS_URL": url, "HYPEREAL_REDIS_PREFIX": "acme-prod:"})
    assert given.effective_redis_prefix == "acme-prod:"


def test_a_redis_prefix_with_glob_characters_is_refused() -> None:
    with pytest.raises(SettingsError, match="HYPEREAL_REDIS_PREFIX"):
        load_settings(environ={"HYPEREAL_REDIS_PREFIX": "team*"})


README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_described() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description and field.description.endswith("."), name


def test_the_readme_table_is_the_settings_class() -> None:
    """Regenerate with `hypereal settings --readme README.md` after changing a setting."""
    readme = README.read_text()
    assert with_settings_table(readme) == readme
    for name in Settings.model_fields:
        assert f"| `HYPEREAL_{name.upper()}` |" in readme
    for documented in ("HYPEREAL_KEY_CACHE_SECONDS", "HYPEREAL_WEBHOOK_TIMEOUT_SECONDS", "HYPEREAL_LOG_LEVEL"):
        assert f"| `{documented}` |" in readme


def test_the_settings_command_prints_and_writes_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hypereal.cli import main

    main(["settings", "--markdown"])
    assert capsys.readouterr().out == settings_table()

    stale = tmp_path / "README.md"
    stale.write_text(f"# Title\n\n{README_BEGIN}\n| old |\n{README_END}\n\nMore text.\n")
    main(["settings", "--readme", str(stale)])
    assert stale.read_text() == f"# Title\n\n{README_BEGIN}\n{settings_table()}{README_END}\n\nMore text.\n"

    for name in [name for name in os.environ if name.startswith("HYPEREAL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HYPEREAL_ADMIN_KEY", STRONG_ADMIN_KEY)
    capsys.readouterr()
    main(["settings"])
    printed = capsys.readouterr().out.splitlines()
    assert "HYPEREAL_PORT=8000" in printed and "HYPEREAL_ADMIN_KEY=(set)" in printed
    assert STRONG_ADMIN_KEY not in "\n".join(printed)


@pytest.mark.parametrize(
    ("environ", "host", "base"),
    [
        ({}, "localhost:8000", "http://localhost:8000"),
        ({}, "127.0.0.1:8000", "http://127.0.0.1:8000"),
        ({}, "[::1]:8000", "http://[::1]:8000"),
        ({}, "evil.example", "http://127.0.0.1:8000"),
        ({}, "localhost@evil.example", "http://127.0.0.1:8000"),
        ({}, "localhost:8000/evil", "http://127.0.0.1:8000"),
        ({}, "localhost:http", "http://127.0.0.1:8000"),
        ({}, "[::1", "http://127.0.0.1:8000"),
        ({}, None, "http://127.0.0.1:8000"),
        ({"HYPEREAL_HOST": "10.0.0.5"}, "10.0.0.5:8000", "http://10.0.0.5:8000"),
        ({"HYPEREAL_HOST": "0.0.0.0"}, "0.0.0.0:8000", "http://127.0.0.1:8000"),
        ({"HYPEREAL_TRUSTED_HOSTS": "*.corp.example"}, "a.corp.example", "http://a.corp.example"),
        ({"HYPEREAL_TRUSTED_HOSTS": "*.corp.example"}, "corp.example", "http://127.0.0.1:8000"),
        ({"HYPEREAL_TRUSTED_HOSTS": "*.corp.example"}, "a.corp.example.evil", "http://127.0.0.1:8000"),
        ({"HYPEREAL_PUBLIC_URL": "https://api.example.com/"}, "localhost:8000", "https://api.example.com"),
    ],
)
def test_absolute_urls_never_take_an_untrusted_host(environ: dict[str, str], host: str | None, base: str) -> None:
    assert load_settings(environ=environ).public_base(host) == base


@pytest.mark.parametrize("value", ["https://api.example.com", "api.example.com:443", "evil/x", "a*.example.com"])
def test_trusted_hosts_are_host_names(value: str) -> None:
    with pytest.raises(SettingsError, match="HYPEREAL_TRUSTED_HOSTS"):
        load_settings(environ={"HYPEREAL_TRUSTED_HOSTS": value})
