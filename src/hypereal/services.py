"""Everything a running process holds, built from settings once and closed once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from hypereal.accounts import AccountService
from hypereal.billing import Billing
from hypereal.bus import Bus, build_bus
from hypereal.catalog import Catalog, load_catalog
from hypereal.jobs.engine import JobEngine
from hypereal.jobs.signals import Signals
from hypereal.keys import BusInvalidation, EpochFileInvalidation, Invalidation, KeyService
from hypereal.metrics import Metrics
from hypereal.netguard import OutboundGuard
from hypereal.providers.pool import ProviderPool
from hypereal.ratelimit import RateLimiter
from hypereal.routing import Health, Router
from hypereal.settings import Settings
from hypereal.storage import LocalStorage, S3Storage, Storage
from hypereal.store.db import Database
from hypereal.store.migrate import upgrade

log = logging.getLogger(__name__)
KEY_USAGE_FLUSH_SECONDS = 30.0


@dataclass
class Services:
    settings: Settings
    db: Database
    catalog: Catalog
    metrics: Metrics
    billing: Billing
    keys: KeyService
    accounts: AccountService
    limiter: RateLimiter
    jobs: JobEngine
    bus: Bus
    router: Router
    extensions: dict[str, Any] = field(default_factory=dict)
    """Subsystems that attach themselves (job engine, chat providers); closed in reverse order."""
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, catalog: Catalog | None = None, metrics: Metrics | None = None) -> Services:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.effective_database_url, pool_size=settings.database_pool_size)
        metrics = metrics or Metrics()
        billing = Billing(db, metrics)
        bus = build_bus(settings.redis_url, settings.effective_database_url, settings.effective_redis_prefix)
        invalidation: Invalidation = (
            BusInvalidation(bus) if bus.crosses_processes else EpochFileInvalidation(settings.data_dir / "keys.epoch")
        )
        keys = KeyService(db, invalidation, settings.key_cache_seconds)
        catalog = catalog or load_catalog(settings.catalog)
        health = Health(
            failures_to_open=settings.route_failures_to_open,
            cooldown=settings.route_cooldown_seconds,
            max_cooldown=settings.route_cooldown_max_seconds,
            bus=bus,
            redis_url=settings.redis_url,
            redis_prefix=settings.effective_redis_prefix,
        )
        metrics.watch_routes(health)
        router = Router(catalog, ProviderPool(catalog), health, local_fallback=settings.local_fallback)
        jobs = JobEngine(
            settings=settings,
            db=db,
            catalog=catalog,
            billing=billing,
            metrics=metrics,
            storage=_storage(settings),
            guard=OutboundGuard(
                allow=settings.outbound_allow_list,
                max_bytes=settings.max_input_bytes,
                timeout=settings.input_timeout_seconds,
            ),
            router=router,
            signals=Signals(bus),
        )
        return cls(
            settings=settings,
            db=db,
            catalog=catalog,
            metrics=metrics,
            billing=billing,
            keys=keys,
            accounts=AccountService(db, billing, keys),
            limiter=RateLimiter(settings.redis_url, settings.effective_redis_prefix),
            jobs=jobs,
            bus=bus,
            router=router,
        )

    async def start(self, *, migrate: bool = True) -> None:
        if migrate:
            await upgrade(self.db)
        await self.bus.start()
        await self.router.health.start()
        await self.keys.start()
        self._tasks.append(asyncio.create_task(self._flush_key_usage(), name="key-usage"))

    def spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def _flush_key_usage(self) -> None:
        while True:
            await asyncio.sleep(KEY_USAGE_FLUSH_SECONDS)
            await self.keys.flush_last_used()

    async def close(self) -> None:
        for task in reversed(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for extension in reversed(list(self.extensions.values())):
            closer = getattr(extension, "close", None)
            if closer is not None:
                try:
                    await closer()
                except Exception:
                    log.exception("closing %s failed", type(extension).__name__)
        await self.jobs.close()
        await self.router.pool.close()
        await self.router.health.close()
        await self.keys.close()
        await self.bus.close()
        await self.db.close()


def _storage(settings: Settings) -> Storage:
    if settings.storage == "s3":
        assert settings.s3_bucket is not None  # checked by Settings
        return S3Storage(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_env="AWS_ACCESS_KEY_ID",
            secret_key_env="AWS_SECRET_ACCESS_KEY",
            public_url=settings.s3_public_url,
        )
    return LocalStorage(settings.data_dir / "files", settings.effective_public_url)
