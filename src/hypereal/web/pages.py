"""What every console page shares: templates, security headers, the session guard, forms.

- Templates are Jinja2 with autoescaping on: whatever a user typed (prompts, key and account
  names) reaches the page as text. Data for scripts travels in `<script type="application/json">`
  blocks written with `tojson`, which escapes `<`, `>` and `&`; there is no inline script.
- Every page carries a Content-Security-Policy that allows scripts, styles and fonts from this
  server only, no framing (`frame-ancestors 'none'`), and forms posting only here. Two
  allowances serve the vendored 3D viewer: WebAssembly may compile (`'wasm-unsafe-eval'`; eval
  of JavaScript stays refused) and the one <style> of its shadow DOM is allowed by its hash.
  Output files may come from the storage's own address (S3, a CDN), which images, players and
  the viewer may load.
- Pages that show account data are never cached (`no-store`).
- A page answers a missing or ended session by sending the browser to the sign-in page, and a
  POST without the session's CSRF token with 403.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from hypereal.errors import Forbidden, HyperealError, ValidationFailed
from hypereal.keys import Principal
from hypereal.services import Services
from hypereal.sessions import CSRF_FIELD, ConsoleSession, check_csrf, session_of
from hypereal.settings import Settings
from hypereal.units import to_credits

if TYPE_CHECKING:
    from jinja2 import Environment

HERE = Path(__file__).parent
STATIC = HERE / "static"
MAX_FORM_BYTES = 64 * 1024


class SignInNeeded(Exception):
    """Raised by a page guard; answered with a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


@cache
def environment() -> Environment:
    # Imported with the first page rendered: a server only the API is asked of never loads Jinja2.
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"], default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["credits"] = _credits
    env.filters["when"] = _when
    env.filters["seconds"] = _seconds
    env.globals["asset"] = asset
    return env


def _credits(milli: int | None) -> str:
    value = to_credits(milli or 0)
    return f"{value:,}" if isinstance(value, int) else f"{value:,.3f}".rstrip("0").rstrip(".")


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "—"
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


@cache
def _asset_version(name: str) -> str:
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]


def asset(name: str) -> str:
    """The URL of a static file, with its content hash so that browsers may cache it for ever."""
    return f"/static/{name}?v={_asset_version(name)}"


@cache
def _media_sources(public_url: str, s3_public_url: str | None, s3_endpoint: str | None, s3: bool) -> str:
    origins = {_origin(url) for url in (public_url, s3_public_url, s3_endpoint) if url}
    if s3 and not s3_public_url and not s3_endpoint:
        origins.add("https://*.amazonaws.com")  # presigned URLs of AWS itself
    return " ".join(sorted(origin for origin in origins if origin))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


@cache
def _viewer_style_hashes() -> str:
    """The 3D viewer builds its shadow DOM from a template holding a <style> element: allowed by
    its hash, taken from the vendored file itself so that a refresh keeps it right."""
    bundle = (STATIC / "vendor" / "model-viewer.min.js").read_text(encoding="utf-8")
    hashes = (hashlib.sha256(style.encode()).digest() for style in re.findall(r"<style>(.*?)</style>", bundle, re.S))
    return " ".join(f"'sha256-{base64.b64encode(digest).decode()}'" for digest in hashes)


def content_security_policy(settings: Settings) -> str:
    media = _media_sources(
        settings.effective_public_url, settings.s3_public_url, settings.s3_endpoint_url, settings.storage == "s3"
    )
    return "; ".join(
        (
            "default-src 'self'",
            # WebAssembly may compile (the 3D viewer's decoders); JavaScript eval stays refused.
            "script-src 'self' 'wasm-unsafe-eval'",
            f"style-src 'self' {_viewer_style_hashes()}",
            "font-src 'self'",
            f"img-src 'self' data: blob: {media}".rstrip(),
            f"media-src 'self' blob: {media}".rstrip(),
            f"connect-src 'self' data: blob: {media}".rstrip(),
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def secure_headers(response: Response, settings: Settings) -> Response:
    response.headers["Content-Security-Policy"] = content_security_policy(settings)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    session: ConsoleSession | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    services = services_of(request)
    html = (
        environment()
        .get_template(template)
        .render(
            {
                "request": request,
                "session": session,
                "csrf": session.csrf_token if session else None,
                "path": request.url.path,
                "admin_enabled": services.settings.admin_key is not None,
                **context,
            }
        )
    )
    return secure_headers(HTMLResponse(html, status_code=status_code), services.settings)  # type: ignore[return-value]


def redirect(request: Request, path: str) -> Response:
    return secure_headers(RedirectResponse(path, status_code=303), services_of(request).settings)


async def user_session(request: Request) -> tuple[ConsoleSession, Principal]:
    """The signed-in user's session and key; SignInNeeded otherwise."""
    session = await session_of(request)
    if session is None or session.principal is None:
        raise SignInNeeded(request.url.path)
    request.state.console_session = session  # for the error page's navigation
    return session, session.principal


async def operator_session(request: Request) -> ConsoleSession:
    session = await session_of(request)
    if session is None or not session.operator:
        raise SignInNeeded(request.url.path)
    request.state.console_session = session
    return session


async def form(request: Request, session: ConsoleSession | None = None) -> dict[str, str]:
    """An urlencoded form body (the last value of each field); its CSRF token checked when a
    session is given."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ValidationFailed("Form too large")
    fields = {name: values[-1] for name, values in parse_qs(body.decode("utf-8", "replace")).items()}
    if session is not None:
        check_csrf(session, fields.get(CSRF_FIELD))
    return fields


def local_path(value: str | None) -> str | None:
    """`value` if it is a path of this site, else None: never another host (`//evil`, `/\\evil`)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")) or len(value) > 500:
        return None
    return value


async def user_form(request: Request) -> tuple[ConsoleSession, Principal, dict[str, str]]:
    """A user's form post: the session, its key, and the fields, the CSRF token checked."""
    session, principal = await user_session(request)
    return session, principal, await form(request, session)


async def operator_form(request: Request) -> tuple[ConsoleSession, dict[str, str]]:
    session = await operator_session(request)
    return session, await form(request, session)


def sign_in_redirect(request: Request, next_path: str) -> Response:
    target = "/sign-in" if next_path in ("/", "") else f"/sign-in?next={quote(next_path)}"
    return redirect(request, target)


def error_page(request: Request, error: HyperealError, session: ConsoleSession | None = None) -> HTMLResponse:
    status = error.status if error.status >= 400 else 500
    title = "Not allowed" if isinstance(error, Forbidden) else "Something went wrong"
    return render(
        request, "error.html", {"title": title, "message": error.message}, session=session, status_code=status
    )
