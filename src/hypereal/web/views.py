"""Jobs as the console shows them: each output with its kind, a URL made now, and its preview."""

from __future__ import annotations

from typing import Any

from hypereal.jobs.engine import PUBLIC_STATUS
from hypereal.services import Services
from hypereal.store.jobs import Job
from hypereal.units import to_credits

KINDS = {"image": "image", "video": "video", "audio": "audio", "model": "model"}


def kind_of(content_type: str) -> str:
    family = content_type.split("/", 1)[0]
    return KINDS.get(family, "file")


async def job_card(services: Services, job: Job) -> dict[str, Any]:
    storage = services.jobs.storage
    outputs = []
    for output in job.outputs or []:
        url = await storage.url_for(output["key"]) if "key" in output else output.get("url")
        preview = await storage.url_for(output["previewKey"]) if "previewKey" in output else None
        outputs.append(
            {
                "url": url,
                "kind": kind_of(str(output.get("contentType", ""))),
                "content_type": output.get("contentType"),
                "size": output.get("size"),
                "preview": preview,
            }
        )
    extra = job.extra or {}
    params = job.params or {}
    prompt = params.get("prompt") or params.get("text")
    return {
        "id": job.id,
        "model": job.model,
        "type": job.type,
        "category": job.category,
        "status": PUBLIC_STATUS.get(job.status, job.status),
        "stage": job.stage,
        "running": not job.terminal,
        "cancel_requested": job.cancel_requested,
        "credits": to_credits(job.credits),
        "prompt": prompt if isinstance(prompt, str) else None,
        "text": extra.get("text") if job.category == "audio" and isinstance(extra.get("text"), str) else None,
        "duration": extra.get("duration"),
        "params": params,
        "provider": job.provider,
        "served_by": extra.get("served_model") if extra.get("fallback") else None,
        "error": job.error,
        "webhook_url": job.webhook_url,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "completed_at": job.completed_at,
        "queued_for": (job.started_at - job.created_at) if job.started_at else None,
        "ran_for": (job.completed_at - job.started_at) if job.completed_at and job.started_at else None,
        "outputs": outputs,
    }
