"""The `hypereal` command: run the server or worker, and the admin operations offline."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import logging
import shlex
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hypereal.units import to_credits

if TYPE_CHECKING:
    from hypereal.services import Services
    from hypereal.settings import Settings

YOUNG_COLLECTION_ALLOCATIONS = 50_000

Command = Callable[["Services", argparse.Namespace], Awaitable[Any]]


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


async def _serve(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from hypereal.app import create_app
    from hypereal.http_server import HttpProtocol, Server
    from hypereal.services import Services

    services = Services.build(settings)
    await services.start()
    server: Server | None = None
    try:
        print(await _development_account_notice(services), end="", flush=True)
        app = create_app(settings, services=services)
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            access_log=False,
            http=HttpProtocol.with_limits(max_head_bytes=settings.max_header_bytes, max_headers=settings.max_headers),
            # Nothing here reads the client's address or a proxy's scheme (URLs come from the
            # public URL setting or a trusted Host), so X-Forwarded-* need no parsing per request.
            proxy_headers=False,
        )
        _settle_heap()
        server = Server(config, services)
        await server.serve()
    finally:
        await (services.close() if server is None else server.close_services())


async def _development_account_notice(services: Services) -> str:
    """What `serve` says about the development account: its key when it was just made, else
    how to make another (the first key was shown once, and only its hash is kept)."""
    from hypereal.settings import Settings

    settings = services.settings
    credits = settings.effective_dev_account_credits
    if not credits:
        return ""
    key = await services.accounts.ensure_development_account(credits)
    if key is not None:
        return (
            f"\nCreated a development account with {credits} credits. Its API key (shown once):\n\n    {key}\n\n"
            f'Try: curl {settings.effective_public_url}/v1/account -H "Authorization: Bearer {key}"\n\n'
        )
    account = await services.accounts.development_account()
    if account is None:
        return ""
    command = [*_program(), "keys", "create", account.id, "--name", "another"]
    if settings.data_dir != Settings.model_fields["data_dir"].default:
        command += ["--data-dir", str(settings.data_dir)]
    return (
        f"\nThe development account is {account.id}; its first key was shown once, when it was created."
        f" For another key:\n\n    {shlex.join(command)}\n\n"
    )


def _program() -> list[str]:
    """How this process was started, for a command to paste: the `hypereal` script, or the module."""
    started_as = sys.argv[0]
    return [started_as] if Path(started_as).name == "hypereal" else [sys.executable, "-m", "hypereal.cli"]


def _settle_heap() -> None:
    """Keep the garbage collector off what start-up built and off most short-lived requests.

    Every object start-up made (the app, the catalog, imported modules) lives as long as the
    process; frozen, the collector no longer walks them on each full collection. A request
    allocates hundreds of objects that die by reference counting, so collecting the young
    generation every 700 allocations (the default) found little and ran several times per
    request; under load its full collections also paused every open request at once.

    Only the young generation is collected before the freeze: under the start-up thresholds
    (`main`) nearly all that start-up threw away is still there, while a full collection
    walked the whole heap for a dozen more objects and took a tenth of the start.
    """
    gc.collect(0)
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_ALLOCATIONS, 20, 20)


async def _worker(settings: Settings, args: argparse.Namespace) -> None:
    try:
        worker = importlib.import_module("hypereal.jobs.worker")
    except ModuleNotFoundError:
        raise SystemExit("This build has no job worker.") from None
    await worker.run_standalone(settings)


async def _migrate(services: Services, args: argparse.Namespace) -> None:
    _print(args, {"migrated": True}, "Database is at the latest schema.")


async def _accounts_create(services: Services, args: argparse.Namespace) -> None:
    account = await services.accounts.create_account(args.name, args.credits)
    _print(args, account.public(), f"{account.id}\t{account.name}\t{to_credits(account.balance)} credits")


async def _accounts_list(services: Services, args: argparse.Namespace) -> None:
    accounts = await services.accounts.list_accounts(limit=10_000)
    _print(
        args,
        {"data": [a.public() for a in accounts]},
        "\n".join(f"{a.id}\t{a.name}\t{to_credits(a.balance)} credits" for a in accounts) or "No accounts.",
    )


async def _keys_create(services: Services, args: argparse.Namespace) -> None:
    record, raw = await services.accounts.create_key(args.account_id, args.name, args.rate_limit)
    _print(args, {"id": record.id, "key": raw, "prefix": record.prefix}, f"{record.id}\t{raw}")


async def _keys_list(services: Services, args: argparse.Namespace) -> None:
    keys = await services.accounts.list_keys(args.account_id)
    _print(
        args,
        {"data": [k.public() for k in keys]},
        "\n".join(f"{k.id}\t{k.prefix}…\t{k.name}\t{'revoked' if k.revoked_at else 'active'}" for k in keys)
        or "No keys.",
    )


async def _keys_revoke(services: Services, args: argparse.Namespace) -> None:
    await services.accounts.revoke_key(args.key_id)
    _print(args, {"revoked": args.key_id}, f"Revoked {args.key_id}.")


async def _credits_add(services: Services, args: argparse.Namespace) -> None:
    entry = await services.billing.top_up(args.account_id, args.amount)
    _print(args, {"balance": to_credits(entry.balance_after)}, f"Balance: {to_credits(entry.balance_after)} credits")


async def _credits_show(services: Services, args: argparse.Namespace) -> None:
    account = await services.accounts.get(args.account_id)
    _print(args, {"balance": to_credits(account.balance)}, f"Balance: {to_credits(account.balance)} credits")


async def _models_list(services: Services, args: argparse.Namespace) -> None:
    from hypereal.api.models import model_list

    listing = model_list(services.catalog, args.category)
    _print(
        args,
        listing,
        "\n".join(
            f"{m['id']:<40} {m['category']:<11} {'available' if m['available'] else '-'}" for m in listing["data"]
        ),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hypereal", description="Self-hostable Hypereal API server.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API server (and the job worker, unless --no-worker)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--data-dir", type=Path)
    serve.add_argument("--no-worker", action="store_true")
    serve.set_defaults(server=_serve)

    worker = commands.add_parser("worker", help="run job workers only")
    worker.add_argument("--data-dir", type=Path)
    worker.add_argument("--concurrency", type=int)
    worker.set_defaults(server=_worker)

    def offline(name: str, handler: Command, help_text: str, into: Any = commands) -> argparse.ArgumentParser:
        command: argparse.ArgumentParser = into.add_parser(name, help=help_text)
        command.add_argument("--json", action="store_true", help="print JSON")
        command.add_argument("--data-dir", type=Path)
        command.set_defaults(handler=handler)
        return command

    offline("migrate", _migrate, "create or upgrade the database schema")

    accounts = commands.add_parser("accounts", help="manage accounts").add_subparsers(dest="action", required=True)
    create = offline("create", _accounts_create, "create an account", accounts)
    create.add_argument("name")
    create.add_argument("--credits", type=int, default=0)
    offline("list", _accounts_list, "list accounts", accounts)

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(dest="action", required=True)
    key_create = offline("create", _keys_create, "create a key (shown once)", keys)
    key_create.add_argument("account_id")
    key_create.add_argument("--name")
    key_create.add_argument("--rate-limit", type=int, help="requests per hour")
    offline("list", _keys_list, "list an account's keys", keys).add_argument("account_id")
    offline("revoke", _keys_revoke, "revoke a key", keys).add_argument("key_id")

    credits = commands.add_parser("credits", help="manage credits").add_subparsers(dest="action", required=True)
    add = offline("add", _credits_add, "top up an account (min 200)", credits)
    add.add_argument("account_id")
    add.add_argument("amount", type=int)
    offline("show", _credits_show, "show an account's balance", credits).add_argument("account_id")

    listing = commands.add_parser("settings", help="every setting: this environment's values, or the README table")
    listing.add_argument("--markdown", action="store_true", help="print the README's configuration table")
    listing.add_argument("--readme", type=Path, help="rewrite the configuration table of this README file")

    models = commands.add_parser("models", help="the model catalog").add_subparsers(dest="action", required=True)
    offline("list", _models_list, "list models", models).add_argument("--category")
    return parser


async def _run_offline(settings: Settings, handler: Command, args: argparse.Namespace) -> None:
    from hypereal.services import Services

    services = Services.build(settings)
    try:
        await services.start()
        await handler(services, args)
    finally:
        await services.close()


def _settings_command(args: argparse.Namespace) -> None:
    from pydantic import SecretStr

    from hypereal.settings import ENV_PREFIX, Settings, load_settings, settings_table, with_settings_table

    if args.readme is not None:
        args.readme.write_text(with_settings_table(args.readme.read_text()))
        print(f"Wrote the settings table of {args.readme}.")
    elif args.markdown:
        print(settings_table(), end="")
    else:
        current = load_settings()
        for name in Settings.model_fields:
            value = getattr(current, name)
            shown = "(set)" if isinstance(value, SecretStr) else "" if value is None else value
            print(f"{ENV_PREFIX}{name.upper()}={shown}")


def main(argv: list[str] | None = None) -> None:
    # Start-up makes about a million objects (modules, models, the catalog, the routes) that live
    # as long as the process: the collections the default thresholds ran while they were made
    # found next to nothing and took a sixth of the server's start. So the modules that make them
    # are imported in `_main`, under the thresholds the server keeps (`_settle_heap`), not above.
    thresholds = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_ALLOCATIONS, 20, 20)
    try:
        _main(argv)
    finally:
        gc.set_threshold(*thresholds)


def _main(argv: list[str] | None) -> None:
    from hypereal.catalog import CatalogError
    from hypereal.errors import HyperealError
    from hypereal.settings import SettingsError, load_settings

    args = _parser().parse_args(argv)
    if args.command == "settings":
        try:
            _settings_command(args)
        except SettingsError as exc:
            print(f"hypereal: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        return
    overrides: dict[str, Any] = {"data_dir": getattr(args, "data_dir", None)}
    if args.command == "serve":
        overrides.update(host=args.host, port=args.port, worker=False if args.no_worker else None)
    if args.command == "worker":
        overrides.update(worker_concurrency=args.concurrency)
    try:
        settings = load_settings(**overrides)
        logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if hasattr(args, "server"):
            # uvicorn installs uvloop only when it runs the loop itself; we run it, so we pick it.
            try:
                import uvloop
            except ImportError:
                asyncio.run(args.server(settings, args))
            else:
                uvloop.run(args.server(settings, args))
        else:
            asyncio.run(_run_offline(settings, args.handler, args))
    except (SettingsError, CatalogError) as exc:
        print(f"hypereal: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except HyperealError as exc:
        print(f"hypereal: {exc.message}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
