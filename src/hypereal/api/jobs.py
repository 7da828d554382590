"""Job polling, listing, canceling, and the webhook delivery log."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from hypereal.api import schemas
from hypereal.api.deps import CurrentKey, ServicesDep
from hypereal.api.openapi import errors
from hypereal.api.responses import JsonResponse
from hypereal.errors import Conflict
from hypereal.jobs.engine import public_job
from hypereal.store import jobs as store

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=errors(401, 429))

STATUS_FILTER: dict[str, tuple[str, ...]] = {
    "processing": (store.QUEUED, store.RUNNING),
    "completed": (store.COMPLETED,),
    "failed": (store.FAILED,),
    "canceled": (store.CANCELED,),
}


@router.get("/{job_id}", response_model=schemas.Job, responses=errors(404))
async def get_job(job_id: str, principal: CurrentKey, services: ServicesDep) -> JsonResponse:
    """A job's status and outputs; one read, no write, so it can be polled hard."""
    job = await services.jobs.get(job_id, principal.account_id)
    return JsonResponse(public_job(await services.jobs.present(job)))


@router.get("", response_model=schemas.JobPage, responses=errors(400))
async def list_jobs(
    principal: CurrentKey,
    services: ServicesDep,
    status: Literal["processing", "completed", "failed", "canceled"] | None = None,
    type: Literal["image", "video", "audio", "3d"] | None = None,
    model: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[
        float | None, Query(ge=0, allow_inf_nan=False, description="Cursor: jobs created before this time")
    ] = None,
) -> JsonResponse:
    """The account's jobs, newest first."""
    filters: dict[str, tuple[str, ...]] = {}
    if status:
        filters["status"] = STATUS_FILTER[status]
    if type:
        filters["type"] = (type,)
    if model:
        filters["model"] = (model,)
    async with services.db.read() as conn:
        found = await store.page(conn, principal.account_id, limit + 1, before, filters)
    more = len(found) > limit
    found = found[:limit]
    return JsonResponse(
        {
            "data": [public_job(await services.jobs.present(job)) for job in found],
            "has_more": more,
            "next_cursor": found[-1].created_at if more else None,
        }
    )


@router.post("/{job_id}/cancel", response_model=schemas.Job, responses=errors(404, 409))
async def cancel_job(job_id: str, principal: CurrentKey, services: ServicesDep) -> JsonResponse:
    """Cancel a job: refunded at once if not started; canceled upstream where the provider can."""
    job = await services.jobs.cancel(job_id, principal.account_id)
    return JsonResponse(public_job(await services.jobs.present(job)))


@router.get("/{job_id}/deliveries", response_model=schemas.DeliveryList, responses=errors(404))
async def deliveries(job_id: str, principal: CurrentKey, services: ServicesDep) -> JsonResponse:
    """Every webhook delivery of the job, with each attempt's status and latency."""
    await services.jobs.get(job_id, principal.account_id)
    async with services.db.read() as conn:
        return JsonResponse({"data": await store.deliveries_for(conn, job_id)})


@router.post(
    "/{job_id}/deliveries/retry",
    status_code=202,
    response_model=schemas.DeliveryQueued,
    responses=errors(404, 409),
)
async def retry_delivery(job_id: str, principal: CurrentKey, services: ServicesDep) -> JsonResponse:
    """Deliver the job's webhook again, with the same webhook-id."""
    job = await services.jobs.get(job_id, principal.account_id)
    if not job.webhook_url:
        raise Conflict("This job has no webhook_url")
    async with services.db.write() as conn:
        latest = await store.latest_delivery(conn, job_id)
        if latest is None:
            raise Conflict("The job has not finished; its webhook is sent when it does")
        await store.reschedule_delivery(conn, latest.id)
    await services.jobs.signals.delivery_queued()
    return JsonResponse({"queued": True, "messageId": latest.message_id}, status_code=202)
