"""Signing in and out of the console, and the static files its pages use.

The sign-in form has no session to take a CSRF token from, so it uses a double-submit
cookie: a random value both in a SameSite=Strict cookie and in the form, which another site
can neither read nor set. A successful sign-in always starts a new session (no fixation) and
sends the browser on to the page it came for, if that is a path of this site.
"""

from __future__ import annotations

import mimetypes
import secrets
from collections.abc import Awaitable, Callable
from functools import wraps

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from hypereal.errors import HyperealError, NotFound, Unauthorized
from hypereal.sessions import COOKIE, SESSION_SECONDS, SIGN_IN_COOKIE, console_sessions, same_secret, session_of
from hypereal.web.pages import (
    STATIC,
    SignInNeeded,
    error_page,
    form,
    local_path,
    redirect,
    render,
    services_of,
    sign_in_redirect,
)

Page = Callable[[Request], Awaitable[Response]]
router = APIRouter(include_in_schema=False)


def page(handler: Page) -> Page:
    """A console endpoint: no session sends the browser to sign in, errors become HTML pages."""

    @wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except SignInNeeded as needed:
            return sign_in_redirect(request, needed.next_path)
        except HyperealError as error:
            return error_page(request, error, getattr(request.state, "console_session", None))

    return endpoint


def https(request: Request) -> bool:
    return request.url.scheme == "https" or services_of(request).settings.effective_public_url.startswith("https:")


@router.get("/sign-in")
@page
async def sign_in_form(request: Request) -> Response:
    session = await session_of(request)
    if session is not None:
        return redirect(request, "/admin" if session.operator else "/")
    return _form(request, None, 200)


def _form(request: Request, error: str | None, status: int, next_path: str | None = None) -> Response:
    token = secrets.token_urlsafe(24)
    next_path = local_path(next_path or request.query_params.get("next")) or ""
    response = render(request, "sign_in.html", {"token": token, "error": error, "next": next_path}, status_code=status)
    response.set_cookie(
        SIGN_IN_COOKIE, token, max_age=3600, path="/sign-in", httponly=True, samesite="strict", secure=https(request)
    )
    return response


@router.post("/sign-in")
@page
async def sign_in(request: Request) -> Response:
    fields = await form(request)
    if not same_secret(fields.get("csrf"), request.cookies.get(SIGN_IN_COOKIE) or "\0"):
        return _form(request, "The sign-in form expired; please try again.", 403, fields.get("next"))
    try:
        token, session = await console_sessions(services_of(request)).sign_in(fields.get("key", ""))
    except Unauthorized:
        return _form(request, "That key was not accepted: it is unknown, revoked or mistyped.", 401, fields.get("next"))
    target = local_path(fields.get("next")) or ("/admin" if session.operator else "/")
    if session.operator != target.startswith("/admin"):
        target = "/admin" if session.operator else "/"
    response = redirect(request, target)
    response.set_cookie(
        COOKIE, token, max_age=SESSION_SECONDS, path="/", httponly=True, samesite="lax", secure=https(request)
    )
    response.delete_cookie(SIGN_IN_COOKIE, path="/sign-in")
    return response


@router.post("/sign-out")
@page
async def sign_out(request: Request) -> Response:
    session = await session_of(request)
    if session is not None:
        await form(request, session)
        await console_sessions(services_of(request)).end(session)
    response = redirect(request, "/sign-in")
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=https(request))
    return response


_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".json": "application/json"}


@router.get("/static/{name:path}")
async def static(request: Request) -> Response:
    """The console's own files; cached for ever when asked for by content hash (`?v=`)."""
    root = STATIC.resolve()
    path = (root / request.path_params["name"]).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise NotFound("File not found")
    media_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    cache = "public, max-age=31536000, immutable" if "v" in request.query_params else "public, max-age=300"
    response = FileResponse(path, media_type=media_type, headers={"Cache-Control": cache})
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
