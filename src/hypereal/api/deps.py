"""Request dependencies: the services, the authenticated key (rate-limited), the admin."""

from __future__ import annotations

import hmac
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from hypereal.api.edge import RATE_LIMIT_SCOPE_KEY
from hypereal.api.errors import describe_validation
from hypereal.errors import Forbidden, Unauthorized, ValidationFailed
from hypereal.keys import KEY_PREFIX, Principal
from hypereal.services import Services
from hypereal.sessions import cookie_principal

Model = TypeVar("Model", bound=BaseModel)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def services_dependency(request: Request) -> Services:
    # Async on purpose: FastAPI runs a plain `def` dependency in a worker thread, a thread hop
    # on every request for what is an attribute read.
    return get_services(request)


def presented_key(request: Request) -> str | None:
    """The key from `Authorization: Bearer` or `x-api-key` (Anthropic clients send the latter).

    Read from the raw header list in one pass: on every authenticated call, building
    Starlette's header mapping and scanning it once per name cost more than the key lookup.
    """
    authorization: bytes | None = None
    api_key: bytes | None = None
    for name, value in request.scope["headers"]:
        if name == b"authorization":
            authorization = authorization or value
        elif name == b"x-api-key":
            api_key = api_key or value
    if authorization:
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return api_key.decode("latin-1") if api_key is not None else None


async def current_principal(request: Request) -> Principal:
    services = get_services(request)
    presented = presented_key(request)
    if presented is None:  # the web console's own calls: its session cookie stands for the key
        principal = await cookie_principal(request, request.method)
    else:
        principal = await services.keys.authenticate(presented)
    limit = principal.rate_limit_per_hour or services.settings.default_rate_limit_per_hour
    request.scope[RATE_LIMIT_SCOPE_KEY] = await services.limiter.hit(principal.key_id, limit)
    return principal


async def admin(request: Request) -> None:
    services = get_services(request)
    presented = presented_key(request)
    if not presented:
        raise Unauthorized()
    expected = services.settings.admin_key
    if expected is not None and hmac.compare_digest(presented.encode(), expected.get_secret_value().encode()):
        return
    if presented.startswith(KEY_PREFIX):
        raise Forbidden("This endpoint needs the admin key")
    raise Unauthorized()


async def json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object, with our error shape for anything else."""
    raw = await request.body()
    if not raw:
        raise ValidationFailed("Request body is required")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValidationFailed("Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ValidationFailed("Request body must be a JSON object")
    return body


JsonBody = Annotated[dict[str, Any], Depends(json_object)]


async def authorized_body(request: Request) -> tuple[Principal, Services, dict[str, Any]]:
    """For fast-lane endpoints: the key (rate-limited), the services and the JSON body, in the
    order FastAPI resolves `CurrentKey`, `ServicesDep` and `JsonBody` for the other routes."""
    principal = await current_principal(request)
    return principal, get_services(request), await json_object(request)


def parsed(model: type[Model]) -> Any:
    """A dependency that validates the JSON body against `model`, whatever the Content-Type says."""

    async def dependency(body: JsonBody) -> Model:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise describe_validation(list(exc.errors())) from None

    return Depends(dependency)


ServicesDep = Annotated[Services, Depends(services_dependency)]
CurrentKey = Annotated[Principal, Depends(current_principal)]
AdminAccess = Depends(admin)
