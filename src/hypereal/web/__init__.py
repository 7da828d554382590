"""The web console, served by the API's own process at `/`.

Server-rendered pages (Jinja2) with a little script of our own; every asset ships in the
package (`static/`, vendored front-end files in `static/vendor/` with their licences), so the
console works air-gapped and needs no Node.js to run. Its routes are included after every
API route, so they add nothing to the matching of an API request, and the chat routes are
answered by the fast lane before FastAPI sees them at all.

    sign_in.py         sign in and out, static files, the page wrapper
    pages.py           templates, security headers (CSP), session guards, forms
    account_pages.py   overview, keys, usage and ledger, webhooks
    media_pages.py     generations gallery, playground, model catalog
    operator_pages.py  accounts and the system, for the admin key
    views.py           jobs as the pages show them
    traffic.py         the API's traffic in the last hour
"""

from __future__ import annotations

from fastapi import APIRouter

from hypereal.services import Services
from hypereal.web import account_pages, media_pages, operator_pages, sign_in
from hypereal.web.traffic import traffic

router = APIRouter(include_in_schema=False)
for part in (sign_in.router, account_pages.router, media_pages.router, operator_pages.router):
    router.include_router(part)


def start(services: Services) -> None:
    """What the console keeps while the process runs: a window on the last hour's traffic."""
    traffic(services)
