"""The generation endpoints: images (synchronous), videos (asynchronous), audio and 3D.

All of them run on the job engine. Synchronous ones wait for their job up to
HYPEREAL_SYNC_WAIT_SECONDS and then answer 202 with the job instead of holding the
connection; with a `webhook_url`, audio and 3D answer 202 at once.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from hypereal.api import schemas
from hypereal.api.deps import authorized_body
from hypereal.api.fastlane import fast
from hypereal.api.idempotency import idempotent
from hypereal.api.openapi import IDEMPOTENCY_KEY, errors, json_body
from hypereal.api.responses import JsonResponse
from hypereal.catalog import ModelSpec
from hypereal.errors import HyperealError, UnknownModel, ValidationFailed
from hypereal.jobs.engine import Submission, output_urls, tried_view
from hypereal.jobs.validation import validate_params
from hypereal.keys import Principal
from hypereal.routing.preferences import FIELD as PREFERENCES
from hypereal.routing.preferences import Preferences, parse
from hypereal.services import Services
from hypereal.store.jobs import COMPLETED, Job
from hypereal.units import to_credits

router = APIRouter(tags=["generation"], responses=errors(400, 401, 402, 404, 409, 413, 429, 503))
WAITED: dict[int | str, Any] = {
    202: {
        "model": schemas.JobAccepted,
        "description": "Still running after HYPEREAL_SYNC_WAIT_SECONDS, or a `webhook_url` was given: poll `pollUrl`.",
    },
    **errors(502, 504),
}
"""The other answers of the synchronous endpoints: a job still running, or the failure of the one they waited for."""

ENDPOINT_OF = {
    "image": "/api/v1/images/generate",
    "image-edit": "/api/v1/images/generate",
    "video": "/api/v1/videos/generate",
    "audio": "/api/v1/audio/generate",
    "3d": "/api/v1/3d/generate",
    "llm": "/api/v1/chat/completions",
}


def _model(services: Services, body: dict[str, Any], categories: tuple[str, ...]) -> ModelSpec:
    model_id = body.get("model")
    if model_id is None or model_id == "":
        raise ValidationFailed("Model is required", field="model")
    if not isinstance(model_id, str):
        raise ValidationFailed("Model must be a string", field="model")
    try:
        spec = services.catalog.resolve(model_id)
    except UnknownModel:
        spec = services.catalog.resolve(model_id, categories)  # the same error, naming this endpoint's models
    if spec.category not in categories:
        raise ValidationFailed(
            f"Model '{model_id}' is a {spec.category} model; use POST {ENDPOINT_OF[spec.category]}",
            field="model",
        )
    return spec


def _mode(body: dict[str, Any]) -> str:
    mode = body.get("mode", "auto")
    if mode not in ("auto", "fast"):
        raise ValidationFailed("Mode must be 'auto' or 'fast'", field="mode")
    return str(mode)


def _preferences(services: Services, body: dict[str, Any], principal: Principal) -> Preferences | None:
    """The body's `provider` preferences, else the key's."""
    return parse(body.get(PREFERENCES), services.catalog.providers) or principal.preferences


def _submission(
    services: Services, principal: Principal, body: dict[str, Any], spec: ModelSpec, job_id: str | None
) -> Submission:
    """A video, audio or 3D request: its `input` checked against the model's parameters."""
    params = validate_params(spec, _input(body), "input.")
    preferences = _preferences(services, body, principal)
    return Submission(spec, params, _mode(body), _webhook(body), job_id, preferences)


def _webhook(body: dict[str, Any]) -> str | None:
    url = body.get("webhook_url")
    if url is None or url == "":
        return None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValidationFailed("webhook_url must be an http(s) URL", field="webhook_url")
    return url


def _input(body: dict[str, Any]) -> dict[str, Any]:
    given = body.get("input", {})
    if not isinstance(given, dict):
        raise ValidationFailed("Input must be an object", field="input")
    return given


def _poll_url(request: Request, job: Job) -> str:
    settings = request.app.state.services.settings
    base = settings.public_base(request.headers.get("host"), request.scope.get("scheme", "http"))
    return f"{base}/api/v1/jobs/{job.id}?model={job.model}&type={job.type}"


def _served(job: Job) -> dict[str, Any]:
    """Who served a request the requested model's upstreams could not, or that another route
    failed first: said in every answer."""
    extra = job.extra or {}
    served: dict[str, Any] = {}
    if extra.get("fallback"):
        served = {"provider": job.provider, "servedBy": extra.get("served_model")}
    if extra.get("tried"):
        served.update(provider=job.provider, tried=tried_view(job))
    return served


def _accepted(request: Request, job: Job, message: str) -> JsonResponse:
    return JsonResponse(
        {
            "jobId": job.id,
            "status": "processing",
            "message": message,
            "creditsUsed": to_credits(job.credits),
            "pollUrl": _poll_url(request, job),
            **_served(job),
        },
        status_code=202,
    )


def _raise_failure(job: Job) -> None:
    """A job that ended without output answers like the error that ended it."""
    error = HyperealError(job.error or "Generation failed", jobId=job.id, refunded=True)
    error.status = int((job.extra or {}).get("error_status", 502))  # type: ignore[misc]
    raise error


async def _run(
    request: Request,
    principal: Principal,
    services: Services,
    submission: Submission,
    render: Any,
    *,
    wait: bool,
) -> Response:
    job = await services.jobs.submit(principal, submission)
    if not wait:
        return _accepted(request, job, "Generation started. Result will be sent to your webhook URL.")
    job = await services.jobs.wait(job, services.settings.sync_wait_seconds)
    if not job.terminal:
        return _accepted(request, job, "Generation is taking longer than usual. Poll pollUrl for the result.")
    if job.status != COMPLETED:
        _raise_failure(job)
    response: Response = render(await services.jobs.present(job))
    return response


@router.post(
    "/images/generate",
    response_model=schemas.ImageResult,
    responses=WAITED,
    openapi_extra=json_body(schemas.ImageRequest, parameters=[IDEMPOTENCY_KEY]),
)
@fast
async def generate_image(request: Request) -> Response:
    """Generate or edit an image; answers with the image URL when done (synchronous)."""
    principal, services, body = await authorized_body(request)

    async def handle(job_id: str | None) -> Response:
        spec = _model(services, body, ("image", "image-edit"))
        given = {k: v for k, v in body.items() if k not in ("model", "mode", "webhook_url", PREFERENCES)}
        params = validate_params(spec, given)
        preferences = _preferences(services, body, principal)
        submission = Submission(spec, params, _mode(body), _webhook(body), job_id, preferences)

        def render(job: Job) -> Response:
            return JsonResponse(
                {
                    "created": int(job.completed_at or time.time()),
                    "data": [{"url": url, "model": job.model} for url in output_urls(job)],
                    "resultId": job.id,
                    "jobId": job.id,
                    "creditsUsed": to_credits(job.credits),
                    **_served(job),
                }
            )

        return await _run(request, principal, services, submission, render, wait=True)

    return await idempotent(request, principal, services, handle)


@router.post(
    "/videos/generate",
    status_code=202,
    response_model=schemas.JobAccepted,
    openapi_extra=json_body(schemas.VideoRequest, parameters=[IDEMPOTENCY_KEY]),
)
@fast
async def generate_video(request: Request) -> Response:
    """Start a video generation; poll `pollUrl` or receive the result at `webhook_url`."""
    principal, services, body = await authorized_body(request)

    async def handle(job_id: str | None) -> Response:
        submission = _submission(services, principal, body, _model(services, body, ("video",)), job_id)
        job = await services.jobs.submit(principal, submission)
        message = (
            "Generation started. Result will be sent to your webhook URL."
            if submission.webhook_url
            else "Generation started. Poll pollUrl for the result."
        )
        return _accepted(request, job, message)

    return await idempotent(request, principal, services, handle)


@router.post(
    "/audio/generate",
    response_model=schemas.AudioResult,
    responses=WAITED,
    openapi_extra=json_body(schemas.AudioRequest, parameters=[IDEMPOTENCY_KEY]),
)
@fast
async def generate_audio(request: Request) -> Response:
    """Speech, voice cloning or transcription; asynchronous when `webhook_url` is given."""
    principal, services, body = await authorized_body(request)

    async def handle(job_id: str | None) -> Response:
        submission = _submission(services, principal, body, _model(services, body, ("audio",)), job_id)

        def render(job: Job) -> Response:
            extra = job.extra or {}
            answer: dict[str, Any] = {
                "success": True,
                "jobId": job.id,
                "creditsUsed": to_credits(job.credits),
                **_served(job),
            }
            urls = output_urls(job)
            if urls:
                answer["outputUrl"] = urls[0]
                answer["audioUrl"] = urls[0]
            for key in ("text", "duration", "segments"):
                if key in extra:
                    answer[key] = extra[key]
            return JsonResponse(answer)

        return await _run(request, principal, services, submission, render, wait=submission.webhook_url is None)

    return await idempotent(request, principal, services, handle)


@router.post(
    "/3d/generate",
    response_model=schemas.ThreeDResult,
    responses=WAITED,
    openapi_extra=json_body(schemas.ThreeDRequest, parameters=[IDEMPOTENCY_KEY]),
)
@fast
async def generate_3d(request: Request) -> Response:
    """Image or multiview to a GLB model; asynchronous when `webhook_url` is given."""
    principal, services, body = await authorized_body(request)

    async def handle(job_id: str | None) -> Response:
        submission = _submission(services, principal, body, _model(services, body, ("3d",)), job_id)

        def render(job: Job) -> Response:
            urls = output_urls(job)
            return JsonResponse(
                {
                    "success": True,
                    "jobId": job.id,
                    "outputUrl": urls[0] if urls else None,
                    "creditsUsed": to_credits(job.credits),
                    **_served(job),
                }
            )

        return await _run(request, principal, services, submission, render, wait=submission.webhook_url is None)

    return await idempotent(request, principal, services, handle)
