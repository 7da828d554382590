"""The user's media screens: the generations gallery, the playground and the model catalog.

The gallery reads jobs a page at a time by (account, created_at) and shows each output with
the preview made when it was stored (`hypereal.previews`). The playground submits through
the public API with the session's cookie and CSRF header, exactly as a client with the key
would, and shows the equivalent `curl`; its quotes come from the same validation and pricing
as a submission.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from hypereal.api import jobs as jobs_api
from hypereal.api.media import ENDPOINT_OF
from hypereal.api.models import available
from hypereal.api.responses import JsonResponse
from hypereal.catalog import Catalog, ModelSpec
from hypereal.catalog.schema import MEDIA_CATEGORIES, URL_TYPES
from hypereal.errors import HyperealError, ValidationFailed
from hypereal.jobs.engine import charge_for, mode_of
from hypereal.jobs.validation import stand_in_params, validate_params
from hypereal.sessions import CSRF_HEADER, check_csrf, session_of
from hypereal.store import jobs as jobs_store
from hypereal.units import to_credits
from hypereal.web.account_pages import CATEGORY_LABELS
from hypereal.web.pages import local_path, redirect, render, services_of, user_form, user_session
from hypereal.web.sign_in import page
from hypereal.web.views import job_card

router = APIRouter(include_in_schema=False)

GALLERY_PAGE = 24
TYPES = ("image", "video", "audio", "3d")
FLAT_BODY = ("image", "image-edit")
"""Categories whose endpoint takes the parameters at the top level rather than under `input`."""
SAMPLES = {"image": "https://example.com/input.png", "audio": "https://example.com/input.mp3"}


# ---------------------------------------------------------------- gallery


@router.get("/generations")
@page
async def generations(request: Request) -> Response:
    session, principal = await user_session(request)
    services = services_of(request)
    query = request.query_params
    kind = query.get("type") if query.get("type") in TYPES else None
    status = query.get("status") if query.get("status") in jobs_api.STATUS_FILTER else None
    filters: dict[str, tuple[str, ...]] = {}
    if kind:
        filters["type"] = (kind,)
    if status:
        filters["status"] = jobs_api.STATUS_FILTER[status]
    try:
        before = float(query["before"]) if query.get("before") else None
    except ValueError:
        raise ValidationFailed("before must be a time cursor", field="before") from None
    async with services.db.read() as conn:
        found = await jobs_store.page(conn, principal.account_id, GALLERY_PAGE + 1, before, filters)
    cards = [await job_card(services, job) for job in found[:GALLERY_PAGE]]
    more = found[GALLERY_PAGE - 1].created_at if len(found) > GALLERY_PAGE else None
    return render(
        request,
        "generations.html",
        {
            "title": "Generations",
            "cards": cards,
            "kind": kind or "",
            "status": status or "",
            "types": TYPES,
            "statuses": tuple(jobs_api.STATUS_FILTER),
            "older": more,
        },
        session=session,
    )


@router.get("/generations/{job_id}")
@page
async def generation(request: Request) -> Response:
    session, principal = await user_session(request)
    services = services_of(request)
    job = await services.jobs.get(request.path_params["job_id"], principal.account_id)
    async with services.db.read() as conn:
        deliveries = await jobs_store.deliveries_for(conn, job.id)
    card = await job_card(services, job)
    return render(
        request,
        "generation.html",
        {
            "title": f"Generation {job.id}",
            "card": card,
            "params_json": json.dumps(card["params"], indent=2, ensure_ascii=False),
            "deliveries": deliveries,
            "message": request.query_params.get("done"),
        },
        session=session,
    )


@router.post("/generations/{job_id}/cancel")
@page
async def cancel(request: Request) -> Response:
    _session, principal, _ = await user_form(request)
    job_id = request.path_params["job_id"]
    await services_of(request).jobs.cancel(job_id, principal.account_id)
    return redirect(request, f"/generations/{job_id}?done=cancel")


@router.post("/generations/{job_id}/redeliver")
@page
async def redeliver(request: Request) -> Response:
    _session, principal, fields = await user_form(request)
    job_id = request.path_params["job_id"]
    await jobs_api.retry_delivery(job_id, principal, services_of(request))
    return redirect(request, local_path(fields.get("back")) or f"/generations/{job_id}?done=redeliver")


# ---------------------------------------------------------------- playground


@router.get("/playground")
@page
async def playground(request: Request) -> Response:
    session, principal = await user_session(request)
    services = services_of(request)
    catalog = services.catalog
    async with services.db.read() as conn:
        recent = await jobs_store.page(conn, principal.account_id, 30, None, {"status": ("completed",)})
    inputs = []
    for job in recent:
        card = await job_card(services, job)
        for output in card["outputs"]:
            if output["kind"] in ("image", "audio"):
                label = f"{job.model}: {(card['prompt'] or job.id)[:60]}"
                inputs.append({"url": output["url"], "kind": output["kind"], "label": label})
    return render(
        request,
        "playground.html",
        {
            "title": "Playground",
            "chat_models": [_model_view(catalog, spec) for spec in catalog.in_category("llm")],
            "media": {
                "models": [_model_view(catalog, spec) for spec in catalog.models.values() if not spec.is_llm],
                "categories": {name: CATEGORY_LABELS[name] for name in MEDIA_CATEGORIES},
                "inputs": inputs,
            },
            "origin": services.settings.effective_public_url,
        },
        session=session,
    )


def _model_view(catalog: Catalog, spec: ModelSpec) -> dict[str, Any]:
    return {
        "id": spec.id,
        "name": spec.name,
        "category": spec.category,
        "task": spec.task,
        "description": spec.description,
        "available": available(catalog, spec),
        "endpoint": ENDPOINT_OF[spec.category],
        "flat": spec.category in FLAT_BODY,
        "pricing": spec.pricing.model_dump(exclude_defaults=True),
        "price_label": price_label(spec),
        # A list, not an object: the page keeps the catalog's order (a JSON object would be sorted).
        "params": [{"name": name, **param.model_dump(exclude_none=True)} for name, param in spec.params.items()],
    }


def price_label(spec: ModelSpec) -> str:
    pricing = spec.pricing
    if spec.is_llm:
        return f"{pricing.input_per_mtok:g} in / {pricing.output_per_mtok:g} out credits per 1M tokens"
    parts = [
        f"{amount} credit{'' if amount == 1 else 's'} per {unit}"
        for amount, unit in (
            (pricing.per_call, "call"),
            (pricing.per_second, "second"),
            (pricing.per_input_minute, "input minute"),
        )
        if amount
    ]
    if pricing.fast_surcharge_percent:
        parts.append(f"fast mode +{pricing.fast_surcharge_percent}%")
    return ", ".join(parts) or "free"


def headline_price(spec: ModelSpec) -> float:
    pricing = spec.pricing
    return float(pricing.per_call or pricing.per_second or pricing.per_input_minute or pricing.output_per_mtok)


@router.post("/playground/quote")
async def quote(request: Request) -> Response:
    """What a media request would reserve: `{"credits", "served"}`; `error` when the form is not
    complete yet (then priced with the defaults of what is missing)."""
    session = await session_of(request)
    if session is None or session.principal is None:
        return JsonResponse({"error": "Sign in again"}, status_code=401)
    try:
        check_csrf(session, request.headers.get(CSRF_HEADER))
        body = json.loads(await request.body() or b"{}")
        if not isinstance(body, dict) or not isinstance(body.get("input", {}), dict):
            raise ValidationFailed("Send {model, input, mode}")
        services = services_of(request)
        spec = services.catalog.resolve(str(body.get("model")), MEDIA_CATEGORIES)
        plan = services.router.media(spec, mode_of(str(body.get("mode"))))
        choice = plan.targets[0]
        given: dict[str, Any] = body.get("input", {})
        problem = None
        try:
            params = validate_params(spec, given)
        except ValidationFailed as incomplete:
            problem = incomplete.message
            params = validate_params(_without_inputs(spec), given)
        if choice.fallback:
            params = stand_in_params(spec, choice.spec, params)
        cost = charge_for(plan, params)
    except (HyperealError, ValueError) as error:
        message = error.message if isinstance(error, HyperealError) else "The body is not JSON"
        status = error.status if isinstance(error, HyperealError) else 400
        return JsonResponse({"error": message}, status_code=status)
    return JsonResponse({"credits": to_credits(cost), "served": choice.spec.id, "incomplete": problem})


def _without_inputs(spec: ModelSpec) -> ModelSpec:
    """The model with its input files and required marks dropped, to price an unfinished form."""
    params = {
        name: param.model_copy(update={"required": False})
        for name, param in spec.params.items()
        if param.type not in URL_TYPES
    }
    return spec.model_copy(update={"params": params})


# ---------------------------------------------------------------- models


@router.get("/models")
@page
async def models(request: Request) -> Response:
    session, _ = await user_session(request)
    services = services_of(request)
    query = request.query_params
    text = query.get("q", "").strip().lower()
    category = query.get("category", "")
    only_available = query.get("available") == "1"
    try:
        ceiling = float(query["max_price"]) if query.get("max_price") else None
    except ValueError:
        raise ValidationFailed("max_price must be a number", field="max_price") from None
    shown = []
    for spec in services.catalog.models.values():
        if category and spec.category != category:
            continue
        if text and text not in f"{spec.id} {spec.name} {spec.description} {spec.task or ''}".lower():
            continue
        is_available = available(services.catalog, spec)
        if only_available and not is_available:
            continue
        if ceiling is not None and headline_price(spec) > ceiling:
            continue
        view = _model_view(services.catalog, spec)
        view["example"] = example_curl(services.settings.effective_public_url, spec)
        shown.append(view)
    return render(
        request,
        "models.html",
        {
            "title": "Models",
            "models": shown,
            "q": query.get("q", ""),
            "category": category,
            "only_available": only_available,
            "max_price": query.get("max_price", ""),
            "categories": CATEGORY_LABELS,
        },
        session=session,
    )


def example_body(spec: ModelSpec) -> dict[str, Any]:
    """A request body for the model: its required parameters with sample values."""
    if spec.is_llm:
        return {"model": spec.id, "messages": [{"role": "user", "content": "Hello!"}]}
    values: dict[str, Any] = {}
    for name, param in spec.params.items():
        if not param.required:
            continue
        if param.type == "images":
            values[name] = [SAMPLES["image"]]
        elif param.type in SAMPLES:
            values[name] = SAMPLES[param.type]
        elif param.enum:
            values[name] = param.default if param.default is not None else param.enum[0]
        elif param.type in ("integer", "number"):
            values[name] = param.default if param.default is not None else param.minimum or 1
        elif param.type == "boolean":
            values[name] = bool(param.default)
        else:
            values[name] = "Hello from hypereal" if name == "text" else "a lighthouse on a cliff at dusk"
    if spec.category in FLAT_BODY:
        return {"model": spec.id, **values}
    return {"model": spec.id, "input": values}


def example_curl(origin: str, spec: ModelSpec) -> str:
    body = json.dumps(example_body(spec), indent=2, ensure_ascii=False).replace("'", "'\\''")
    return (
        f"curl -X POST {origin}{ENDPOINT_OF[spec.category]} \\\n"
        '  -H "Authorization: Bearer $HYPEREAL_API_KEY" -H "Content-Type: application/json" \\\n'
        f"  -d '{body}'"
    )
