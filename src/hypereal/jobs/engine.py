"""The durable job engine: submit (charge + insert in one transaction), finish, cancel, read.

Every terminal transition goes through `store.jobs.finish`, a compare-and-set, in the same
transaction as its settlement or refund and its webhook outbox row. Whatever crashes or
retries happen, a job ends once, is refunded at most once, and its webhook is queued once.
"""

from __future__ import annotations

import logging
import secrets
import time
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any

import orjson
from sqlalchemy.exc import IntegrityError

from hypereal import previews
from hypereal.billing import Billing
from hypereal.catalog import Catalog, ModelSpec
from hypereal.errors import Conflict, HyperealError, NotFound
from hypereal.jobs.inputs import PrefetchingFetcher
from hypereal.jobs.signals import Signals
from hypereal.jobs.validation import input_urls, price, settled_price, stand_in_params
from hypereal.keys import Principal
from hypereal.metrics import Metrics
from hypereal.netguard import OutboundGuard
from hypereal.providers.base import Handle, Output, Result
from hypereal.routing import Choice, ProviderPool, choose
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
    return "job_" + secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")


@dataclass(frozen=True, slots=True)
class Submission:
    model: ModelSpec
    params: dict[str, Any]
    mode: str
    webhook_url: str | None
    job_id: str | None = None
    """The id the job must take (an idempotent request's); a job already under it is the answer."""


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
        providers: ProviderPool,
        signals: Signals,
    ) -> None:
        self.settings = settings
        self.db = db
        self.catalog = catalog
        self.billing = billing
        self.metrics = metrics
        self.storage = storage
        self.guard = guard
        self.providers = providers
        self.signals = signals
        self.inputs = PrefetchingFetcher(guard)

    # ---- submitting ---------------------------------------------------------------------

    async def submit(self, principal: Principal, request: Submission) -> Job:
        """Validate, price, charge and enqueue; a 4xx here leaves nothing behind."""
        choice: Choice = choose(self.catalog, request.model, request.mode, self.settings.local_fallback)[0]
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
        cost = price(choice.spec, params, choice.fast)
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
            "provider": choice.provider,
            "upstream_model": choice.upstream_model,
            "handle": None,
            "outputs": None,
            "extra": {"served_model": choice.spec.id, "fast": choice.fast, "fallback": choice.fallback},
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
        try:
            async with self.db.write() as conn:
                if request.job_id is not None:
                    with suppress(NotFound):
                        return await store.get(conn, job_id, principal.account_id)  # made before a crash
                source = Source(principal.key_id, choice.spec.id, request.model.category)
                await self.billing.charge_in(conn, principal.account_id, cost, job_id, f"{request.model.id}", source)
                await store.insert(conn, values)
        except IntegrityError:
            if request.job_id is None:
                raise
            # The request whose idempotency claim this one took over was alive after all, and
            # made the job meanwhile: its charge stands, this one's was undone.
            return await self.get(job_id, principal.account_id)
        await self.signals.job_submitted()
        return Job(**values)

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
        spec = self.served_spec(job)
        actual = settled_price(spec, job.params, bool(extra.get("fast")), result.extra)
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
            provider = self.providers.get(job.provider or "")
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

    async def close(self) -> None:
        await self.providers.close()
        await self.guard.close()
        await self.storage.close()


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
    for key in ("text", "duration", "segments"):
        if key in extra:
            view[key] = extra[key]
    if job.cancel_requested and not job.terminal:
        view["cancelRequested"] = True
    return view


def webhook_payload(job: Job) -> dict[str, Any]:
    view = public_job(job)
    payload = {key: view[key] for key in ("status", "outputUrl", "jobId", "type", "model", "creditsUsed")}
    payload["outputs"] = view["outputs"]
    if job.status != COMPLETED:
        payload["error"] = job.error
    return payload


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp)) + f".{int(timestamp % 1 * 1000):03d}Z"
