"""The durable job engine: submit (charge + insert in one transaction), finish, cancel, read.

Every terminal transition goes through `store.jobs.finish`, a compare-and-set, in the same
transaction as its settlement or refund and its webhook outbox row. Whatever crashes or
retries happen, a job ends once, is refunded at most once, and its webhook is queued once.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass, replace
from typing import Any

import orjson
from sqlalchemy.exc import IntegrityError

from hypereal import previews
from hypereal.billing import Billing
from hypereal.catalog import Catalog, ModelSpec, Pricing
from hypereal.catalog.schema import Mode
from hypereal.errors import Conflict, HyperealError
from hypereal.ids import sortable_id
from hypereal.jobs.inputs import PrefetchingFetcher
from hypereal.jobs.signals import Signals
from hypereal.jobs.validation import input_urls, price, settled_price, stand_in_params
from hypereal.keys import Principal
from hypereal.metrics import Metrics
from hypereal.netguard import OutboundGuard
from hypereal.providers.base import Handle, MediaProvider, Output, Result
from hypereal.providers.pool import DEFAULT_DEPLOYMENT
from hypereal.routing import Plan, Preferences, Router, Target
from hypereal.routing.preferences import parse as parse_preferences
from hypereal.settings import Settings
from hypereal.storage import Storage
from hypereal.store import jobs as store
from hypereal.store.db import Database
from hypereal.store.jobs import CANCELED, COMPLETED, FAILED, QUEUED, Job
from hypereal.store.ledger import Source
from hypereal.units import to_credits
from hypereal.webhooks import new_message_id

log = logging.getLogger(__name__)

JOB_TYPES = {"image": "image", "image-edit": "image", "video": "video", "audio": "audio", "3d": "3d"}


def new_job_id() -> str:
    return sortable_id("job_")


@dataclass(frozen=True, slots=True)
class Submission:
    model: ModelSpec
    params: dict[str, Any]
    mode: str
    webhook_url: str | None
    job_id: str | None = None
    """The id the job must take (an idempotent request's); a job already under it is the answer."""
    preferences: Preferences | None = None


class JobEngine:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        catalog: Catalog,
        billing: Billing,
        metrics: Metrics,
        storage: Storage,
        guard: OutboundGuard,
        router: Router,
        signals: Signals,
    ) -> None:
        self.settings = settings
        self.db = db
        self.catalog = catalog
        self.billing = billing
        self.metrics = metrics
        self.storage = storage
        self.guard = guard
        self.router = router
        self.providers = router.pool
        self.signals = signals
        self.inputs = PrefetchingFetcher(guard)

    # ---- submitting ---------------------------------------------------------------------

    async def submit(self, principal: Principal, request: Submission) -> Job:
        """Validate, price, charge and enqueue; a 4xx here leaves nothing behind."""
        plan = self.router.media(request.model, mode_of(request.mode), request.preferences)
        choice = plan.targets[0]
        params = request.params
        if choice.fallback:
            params = stand_in_params(request.model, choice.spec, params)
        inputs = input_urls(choice.spec, params)
        for url, _kind in inputs:
            self.guard.check_url(url)
        if request.webhook_url:
            self.guard.check_url(request.webhook_url, allow_data=False)
            await self.guard.check_destination(request.webhook_url)
        if inputs:
            await self.inputs.check(inputs)
        cost = charge_for(plan, params)
        now = time.time()
        job_id = request.job_id or new_job_id()
        values: dict[str, Any] = {
            "id": job_id,
            "account_id": principal.account_id,
            "key_id": principal.key_id,
            "model": request.model.id,
            "category": request.model.category,
            "type": JOB_TYPES[request.model.category],
            "mode": request.mode,
            "params": params,
            "status": QUEUED,
            "stage": "queued",
            "credits": cost,
            "provider": choice.name,
            "upstream_model": choice.model,
            "handle": None,
            "outputs": None,
            "extra": served_extra(choice, request.preferences),
            "error": None,
            "webhook_url": request.webhook_url,
            "attempts": 0,
            "lease_owner": None,
            "lease_expires_at": None,
            "next_poll_at": None,
            "deadline_at": now + self.settings.job_deadline_seconds,
            "cancel_requested": False,
            "created_at": now,
            "started_at": None,
            "completed_at": None,
        }
        source = Source(principal.key_id, choice.spec.id, request.model.category)
        try:
            made = await self._charge_and_insert(values, cost, source, retry=request.job_id is not None)
        except (IntegrityError, sqlite3.IntegrityError):
            if request.job_id is None:
                raise
            # The request whose idempotency claim this one took over was alive after all, and
            # made the job meanwhile: its charge stands, this one's was undone.
            made = False
        if not made:  # made before a crash, by the request this one retries
            return await self.get(job_id, principal.account_id)
        await self.signals.job_submitted()
        return Job(**values)

    async def _charge_and_insert(self, values: dict[str, Any], cost: int, source: Source, retry: bool) -> bool:
        """The charge and the job's row in one transaction; False when `retry` finds the job made.

        On SQLite both go in the next shared commit on the event loop's own connection
        (`Database.write_soon`), in a savepoint of their own, and are committed before this
        returns: a few microseconds of statements instead of a trip to the database thread
        for each, which queued concurrent submissions behind one another, and one commit for
        the submissions that arrive together instead of one each.
        """
        job_id, account_id, note = values["id"], values["account_id"], values["model"]
        if self.db.is_sqlite:

            def submit(connection: sqlite3.Connection) -> bool:
                if retry and store.exists_sqlite(connection, job_id, account_id):
                    return False
                self.billing.charge_sqlite(connection, account_id, cost, job_id, note, source)
                store.insert_sqlite(connection, values)
                return True

            return await self.db.write_soon(submit)
        async with self.db.write() as conn:
            if retry and await store.exists(conn, job_id, account_id):
                return False
            await self.billing.charge_in(conn, account_id, cost, job_id, note, source)
            await store.insert(conn, values)
        return True

    # ---- reading ------------------------------------------------------------------------

    async def get(self, job_id: str, account_id: str) -> Job:
        async with self.db.read() as conn:
            return await store.get(conn, job_id, account_id)

    async def wait(self, job: Job, seconds: float) -> Job:
        """The job once finished, or as it stands after `seconds`."""
        deadline = time.monotonic() + seconds
        while not job.terminal:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await self.signals.wait_finished(job.id, min(remaining, 1.0))
            job = await self.get(job.id, job.account_id)
        return job

    async def present(self, job: Job) -> Job:
        """The job with output URLs made now: presigned URLs expire, and the process that
        stored a file may have another public address than the one answering."""
        if not job.outputs or not any("key" in output for output in job.outputs):
            return job
        fresh = [
            {**output, "url": await self.storage.url_for(output["key"])} if "key" in output else output
            for output in job.outputs
        ]
        return replace(job, outputs=fresh)

    # ---- finishing ----------------------------------------------------------------------

    def served_spec(self, job: Job) -> ModelSpec:
        served = (job.extra or {}).get("served_model", job.model)
        return self.catalog.models.get(served) or self.catalog.models[job.model]

    def served_pricing(self, job: Job) -> Pricing:
        """The prices of the route serving `job`: its own, else its model's."""
        spec = self.served_spec(job)
        route = next((r for r in spec.routes if (r.provider, r.model) == (job.provider, job.upstream_model)), None)
        return route.pricing if route is not None and route.pricing is not None else spec.pricing

    async def store_outputs(self, job: Job, result: Result) -> list[dict[str, Any]]:
        stored = []
        for output in result.outputs:
            stored.append(await self._store_output(job, output))
        return stored

    async def _store_output(self, job: Job, output: Output) -> dict[str, Any]:
        data = output.data
        if data is None and output.url:
            # Upstream file URLs expire (Replicate's after an hour); keep our own copy.
            try:
                data = (await self.guard.fetch(output.url, kind=_kind_of(output.content_type))).data
            except HyperealError as error:
                log.warning("job %s: keeping the upstream URL, copying it failed: %s", job.id, error.message)
                return {"url": output.url, "contentType": output.content_type}
        assert data is not None
        saved = await self.storage.put(job.account_id, data, output.content_type, output.extension)
        stored = {"url": saved.url, "key": saved.key, "contentType": output.content_type, "size": saved.size}
        preview = await previews.make_soon(data, output.content_type)
        if preview is not None:  # made once, here, for galleries (hypereal.previews)
            thumbnail = await self.storage.put(job.account_id, preview.data, preview.content_type, preview.extension)
            stored["previewKey"] = thumbnail.key
        return stored

    async def complete(self, job: Job, result: Result) -> Job | None:
        """Record success and settle the charge to the real price; None if the job had already ended."""
        if job.cancel_requested:
            return await self.cancel_now(job, "Canceled by request")
        outputs = await self.store_outputs(job, result)
        extra = {**(job.extra or {}), **result.extra}
        actual = settled_price(self.served_pricing(job), job.params, bool(extra.get("fast")), result.extra)
        async with self.db.write() as conn:
            finished = await store.finish(conn, job.id, COMPLETED, outputs=outputs, extra=extra, credits=actual)
            if finished is None:
                return None
            await self.billing.settle_in(conn, job.account_id, job.id, actual)
            await self._queue_webhook(conn, finished)
        await self._after_finish(finished)
        return finished

    async def fail(self, job: Job, error: HyperealError) -> Job | None:
        """Record failure and refund the whole charge, once."""
        extra = {**(job.extra or {}), "error_status": error.status}
        async with self.db.write() as conn:
            finished = await store.finish(conn, job.id, FAILED, error=error.message, extra=extra, credits=0)
            if finished is None:
                return None
            await self.billing.refund_in(conn, job.account_id, job.id, note=error.message[:300])
            await self._queue_webhook(conn, finished)
        await self._after_finish(finished)
        return finished

    async def cancel_now(self, job: Job, reason: str) -> Job | None:
        async with self.db.write() as conn:
            finished = await store.finish(conn, job.id, CANCELED, error=reason, credits=0)
            if finished is None:
                return None
            await self.billing.refund_in(conn, job.account_id, job.id, note="canceled")
            await self._queue_webhook(conn, finished)
        await self._after_finish(finished)
        return finished

    async def _queue_webhook(self, conn: Any, job: Job) -> None:
        if job.webhook_url:
            await store.enqueue_delivery(conn, job, new_message_id(), orjson.dumps(webhook_payload(job)).decode())

    async def _after_finish(self, job: Job) -> None:
        self.metrics.jobs_finished.labels(job.type, job.status).inc()
        await self.signals.job_finished(job.id)
        if job.webhook_url:
            await self.signals.delivery_queued()

    # ---- canceling ----------------------------------------------------------------------

    async def cancel(self, job_id: str, account_id: str) -> Job:
        job = await self.get(job_id, account_id)
        if job.terminal:
            raise Conflict(f"Job is already {job.status}", status=job.status)
        if job.status == QUEUED:
            finished = await self.cancel_now(job, "Canceled by request")
            if finished is not None:
                return finished
            return await self.get(job_id, account_id)
        if job.handle is not None:
            provider = self.provider_of(job)
            try:
                accepted = await provider.cancel(Handle(**job.handle))
            except HyperealError:
                accepted = False
            if accepted:
                finished = await self.cancel_now(job, "Canceled by request")
                if finished is not None:
                    return finished
        # Running here and now: the worker discards the result and refunds when it returns.
        async with self.db.write() as conn:
            await store.request_cancel(conn, job_id)
        return await self.get(job_id, account_id)

    def provider_of(self, job: Job) -> MediaProvider:
        """The provider instance (the deployment) a job was handed to."""
        return self.providers.media(job.provider or "", (job.extra or {}).get("deployment", DEFAULT_DEPLOYMENT))

    # ---- failing over -------------------------------------------------------------------

    def attempted(self, job: Job, error: BaseException | None, seconds: float | None = None) -> None:
        """Tell the routes' health what the upstream serving `job` just did."""
        self.router.health.record(route_of(job), error, seconds)

    def next_target(self, job: Job) -> Target[MediaProvider] | None:
        """The first target of the job's plan (as made now) it was not handed to yet, if any:
        a job goes to each route at most once."""
        extra = job.extra or {}
        spec = self.catalog.models.get(job.model)
        if spec is None:
            return None
        known = self.catalog.providers
        try:
            plan = self.router.media(spec, mode_of(job.mode), parse_preferences(extra.get("preferences"), known))
        except HyperealError:
            return None
        tried = {entry.get("route") for entry in extra.get("tried", ())} | {route_of(job)}
        return next((target for target in plan.targets if target.key not in tried), None)

    def handed_over(self, job: Job, target: Target[MediaProvider], error: HyperealError) -> dict[str, Any]:
        """The job's new values once `target` takes it over from the route that failed with `error`:
        submitted anew (the charge stays the one made, settled at the new route's price)."""
        extra = {key: value for key, value in (job.extra or {}).items() if key != "deployment"}
        failed = {"route": route_of(job), "provider": job.provider, "model": job.upstream_model, "error": error.message}
        extra.update(served_extra(target, None), tried=[*extra.get("tried", ()), failed])
        return {
            "provider": target.name,
            "upstream_model": target.model,
            "extra": extra,
            "handle": None,
            "attempts": 0,
            "stage": "queued",
            "next_poll_at": None,
            "lease_owner": None,
            "lease_expires_at": None,
        }

    async def close(self) -> None:
        await self.guard.close()
        await self.storage.close()


def charge_for(plan: Plan[MediaProvider], params: dict[str, Any]) -> int:
    """What a job is charged when submitted, in millicredits: the most any route of its plan
    costs, since a job that fails over is settled at the price of the route that served it
    and a settlement never exceeds the charge."""
    return max(price(target.pricing, params, target.fast) for target in plan.targets)


def mode_of(mode: str) -> Mode:
    return "fast" if mode == "fast" else "auto"


def served_extra(target: Target[MediaProvider], preferences: Preferences | None) -> dict[str, Any]:
    """What a job records of the target serving it: the model that runs, at which price, where."""
    extra: dict[str, Any] = {
        "served_model": target.spec.id,
        "fast": target.fast,
        "fallback": target.fallback,
        "route": target.key,
    }
    if target.deployment != DEFAULT_DEPLOYMENT:
        extra["deployment"] = target.deployment
    if preferences is not None:
        extra["preferences"] = preferences.public()
    return extra


def route_of(job: Job) -> str:
    """The health key of the route serving `job` (`Target.key`)."""
    return str((job.extra or {}).get("route") or f"{job.provider}/{job.upstream_model}")


def _kind_of(content_type: str) -> str:
    family = content_type.split("/", 1)[0]
    return family if family in ("image", "audio", "video") else "file"


def output_urls(job: Job) -> list[str]:
    return [o["url"] for o in job.outputs or [] if o.get("url")]


PUBLIC_STATUS = {QUEUED: "processing", "running": "processing"}


def public_job(job: Job) -> dict[str, Any]:
    urls = output_urls(job)
    extra = job.extra or {}
    view: dict[str, Any] = {
        "jobId": job.id,
        "status": PUBLIC_STATUS.get(job.status, job.status),
        "stage": job.stage,
        "outputUrl": urls[0] if urls else None,
        "outputs": urls,
        "error": job.error,
        "model": job.model,
        "type": job.type,
        "creditsUsed": to_credits(job.credits),
        "createdAt": _iso(job.created_at),
        "completedAt": _iso(job.completed_at) if job.completed_at else None,
        "provider": job.provider,
    }
    if extra.get("fallback"):
        view["servedBy"] = extra.get("served_model")
    if extra.get("tried"):
        view["tried"] = tried_view(job)
    for key in ("text", "duration", "segments"):
        if key in extra:
            view[key] = extra[key]
    if job.cancel_requested and not job.terminal:
        view["cancelRequested"] = True
    return view


def tried_view(job: Job) -> list[dict[str, Any]]:
    """The routes a job was handed to before the one serving it, and why each gave it up."""
    tried = (job.extra or {}).get("tried") or ()
    return [{key: entry.get(key) for key in ("provider", "model", "error")} for entry in tried]


def webhook_payload(job: Job) -> dict[str, Any]:
    view = public_job(job)
    payload = {key: view[key] for key in ("status", "outputUrl", "jobId", "type", "model", "creditsUsed")}
    payload["outputs"] = view["outputs"]
    if job.status != COMPLETED:
        payload["error"] = job.error
    return payload


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp)) + f".{int(timestamp % 1 * 1000):03d}Z"
