"""The web console over HTTP, without a browser: sessions, CSRF, headers, escaping, the
operator's forms, previews of stored outputs. (tests/e2e/test_console_browser.py drives it in
Chromium.)"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Awaitable, Callable

import httpx
import pytest
from PIL import Image
from sqlalchemy import select, text

from hypereal import web
from hypereal.app import create_app
from hypereal.jobs.engine import Submission
from hypereal.keys import Principal
from hypereal.providers.base import InputFile, MediaRequest, Output, Result
from hypereal.services import Services
from hypereal.sessions import COOKIE
from hypereal.settings import Settings
from hypereal.store.tables import jobs as jobs_table
from tests.conftest import ADMIN_KEY, TestAccount
from tests.e2e.test_local_models_api import long_wav

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def sign_in(client: httpx.AsyncClient, key: str, next_path: str = "") -> httpx.Response:
    form = await client.get("/sign-in")
    token = CSRF.search(form.text)
    assert token, form.text
    return await client.post("/sign-in", data={"csrf": token[1], "key": key, "next": next_path})


async def csrf_of(client: httpx.AsyncClient, path: str = "/keys") -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found
    return found[1]


async def test_pages_need_a_session(client: httpx.AsyncClient) -> None:
    for path in ("/", "/keys", "/usage", "/generations", "/playground", "/models", "/webhooks", "/admin"):
        answer = await client.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/sign-in"), path
    assert (await client.get("/keys")).headers["location"] == "/sign-in?next=/keys"


async def test_sign_in_with_a_key_opens_a_session_that_holds_no_key(
    client: httpx.AsyncClient, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account()
    answer = await sign_in(client, account.key, "/usage")
    assert answer.status_code == 303 and answer.headers["location"] == "/usage"
    cookie = next(value for value in answer.headers.get_list("set-cookie") if value.startswith(COOKIE))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie and "Secure" not in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    assert account.key not in cookie and len(token) >= 40

    page = await client.get("/")
    assert page.status_code == 200
    assert "1,000" in page.text and account.key not in page.text
    policy = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    script = next(part for part in policy.split("; ") if part.startswith("script-src "))
    assert "'unsafe-inline'" not in script and "'unsafe-eval'" not in script
    assert page.headers["cache-control"] == "no-store" and page.headers["x-frame-options"] == "DENY"
    assert "<script>" not in page.text.replace('<script type="application/json"', "")  # no inline script


async def test_bad_keys_and_forged_forms_are_refused(
    client: httpx.AsyncClient, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account()
    wrong = await sign_in(client, "ck_" + "x" * 43)
    assert wrong.status_code == 401 and "not accepted" in wrong.text and COOKIE not in str(wrong.headers)
    assert (await sign_in(client, "the admin key? no")).status_code == 401
    forged = await client.post("/sign-in", data={"csrf": "guess", "key": account.key})
    assert forged.status_code == 403 and COOKIE not in str(forged.headers)


async def test_posts_without_the_csrf_token_are_refused(
    client: httpx.AsyncClient, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account()
    await sign_in(client, account.key)
    for path in ("/keys", f"/keys/{account.key_id}/revoke", "/webhooks/rotate", "/sign-out"):
        refused = await client.post(path, data={"name": "sneaky", "confirm": "1"})
        assert refused.status_code == 403, path
        refused = await client.post(path, data={"csrf": "not-the-token", "name": "sneaky"})
        assert refused.status_code == 403, path
    keys = (await client.get("/api/v1/account/keys")).json()["data"]
    assert [key["id"] for key in keys] == [account.key_id]  # nothing was created or revoked
    assert (await client.get("/")).status_code == 200  # still signed in


async def test_a_key_created_in_the_console_is_shown_once_and_works(
    client: httpx.AsyncClient, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account()
    await sign_in(client, account.key)
    created = await client.post("/keys", data={"csrf": await csrf_of(client), "name": "<b>ci</b>"})
    assert created.status_code == 201
    secret = re.search(r'id="new-key-value">(ck_[^<]+)<', created.text)
    assert secret and "&lt;b&gt;ci&lt;/b&gt;" in created.text and "<b>ci</b>" not in created.text
    assert created.headers["cache-control"] == "no-store"
    used = await client.get("/api/v1/account", headers={"Authorization": f"Bearer {secret[1]}"})
    assert used.status_code == 200
    again = await client.get("/keys")
    assert secret[1] not in again.text and secret[1][:11] in again.text


async def test_the_session_cookie_stands_for_the_key_on_the_api_with_the_csrf_header(
    client: httpx.AsyncClient, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account()
    await sign_in(client, account.key)
    assert (await client.get("/api/v1/account")).json()["id"] == account.id
    assert (await client.post("/api/v1/account/keys", json={"name": "x"})).status_code == 403
    token = await csrf_of(client)
    made = await client.post("/api/v1/account/keys", json={"name": "x"}, headers={"X-CSRF-Token": token})
    assert made.status_code == 201
    # Bearer keys still win over the cookie, and the cookie alone never reaches the admin API.
    other = await client.get("/api/v1/account", headers={"Authorization": f"Bearer {made.json()['key']}"})
    assert other.status_code == 200
    assert (await client.get("/api/v1/admin/accounts")).status_code == 401


async def test_revoking_the_key_ends_its_sessions(
    client: httpx.AsyncClient,
    make_client: Callable[[Services], httpx.AsyncClient],
    services: Services,
    make_account: Callable[..., Awaitable[TestAccount]],
    admin_headers: dict[str, str],
) -> None:
    account = await make_account()
    await sign_in(client, account.key)
    other_browser = make_client(services)
    await sign_in(other_browser, account.key)
    assert (await client.get("/")).status_code == 200 and (await other_browser.get("/")).status_code == 200

    revoked = await client.delete(f"/api/v1/admin/keys/{account.key_id}", headers=admin_headers)
    assert revoked.status_code == 204
    for browser in (client, other_browser):
        answer = await browser.get("/keys")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/sign-in")
        assert (await browser.get("/api/v1/account")).status_code == 401
    assert (await sign_in(client, account.key)).status_code == 401


async def test_revoking_ones_own_key_in_the_console_needs_confirmation_and_signs_out(
    client: httpx.AsyncClient, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account()
    await sign_in(client, account.key)
    token = await csrf_of(client)
    asked = await client.post(f"/keys/{account.key_id}/revoke", data={"csrf": token})
    assert asked.status_code == 409 and "last active key" in asked.text and 'name="confirm"' in asked.text
    done = await client.post(f"/keys/{account.key_id}/revoke", data={"csrf": token, "confirm": "1"})
    assert done.status_code == 303 and done.headers["location"] == "/sign-in"
    assert (await client.get("/")).status_code == 303


async def test_signing_out_ends_the_session_for_good(
    client: httpx.AsyncClient, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account()
    answer = await sign_in(client, account.key)
    stolen = answer.cookies[COOKIE]
    out = await client.post("/sign-out", data={"csrf": await csrf_of(client, "/")})
    assert out.status_code == 303
    client.cookies.set(COOKIE, stolen)
    assert (await client.get("/")).status_code == 303
    assert (await client.get("/api/v1/account")).status_code == 401


async def test_user_typed_text_is_shown_as_text(
    client: httpx.AsyncClient, services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account(name='<script>alert("name")</script>')
    spec = services.catalog.resolve("local-image")
    prompt = '<img src=x onerror=alert(1)> and </script><script>alert("prompt")</script>'
    job = await services.jobs.submit(
        Principal(account.key_id, account.id, None), Submission(spec, {"prompt": prompt}, "auto", None)
    )
    await sign_in(client, account.key)
    for path in ("/", "/generations", f"/generations/{job.id}"):
        page = await client.get(path)
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "<img src=x" not in page.text, path
        assert "&lt;script&gt;alert" in page.text or "&lt;img src=x" in page.text, path


async def test_the_operator_tops_up_and_manages_keys(
    client: httpx.AsyncClient, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account(name="Acme")
    signed = await sign_in(client, ADMIN_KEY)
    assert signed.headers["location"] == "/admin"
    listing = await client.get("/admin", params={"q": "acm"})
    assert account.id in listing.text
    assert (await client.get("/keys")).status_code == 303  # user pages need a user session

    token = await csrf_of(client, f"/admin/accounts/{account.id}")
    small = await client.post(f"/admin/accounts/{account.id}/credits", data={"csrf": token, "amount": "199"})
    assert small.status_code == 400 and "at least 200" in small.text
    topped = await client.post(f"/admin/accounts/{account.id}/credits", data={"csrf": token, "amount": "250"})
    assert topped.status_code == 200 and "1,250" in topped.text
    made = await client.post(
        f"/admin/accounts/{account.id}/keys", data={"csrf": token, "name": "ops", "rate_limit_per_hour": "7"}
    )
    assert made.status_code == 201
    secret = re.search(r'id="new-key-value">(ck_[^<]+)<', made.text)
    assert secret
    limited = await client.get("/api/v1/account", headers={"Authorization": f"Bearer {secret[1]}"})
    assert limited.json()["balance"] == 1250 and limited.headers["x-ratelimit-limit"] == "7"
    revoked = await client.post(f"/admin/keys/{account.key_id}/revoke", data={"csrf": token})
    assert revoked.status_code == 303
    assert (await client.get("/api/v1/account", headers=account.headers)).status_code == 401
    chat = {"model": "local-echo", "messages": [{"role": "user", "content": "hi"}]}
    ops = {"Authorization": f"Bearer {secret[1]}"}
    answered = await client.post("/api/v1/chat/completions", json=chat, headers=ops)
    assert answered.status_code == 200
    system = await client.get("/admin/system")
    assert system.status_code == 200 and "local" in system.text
    traffic = system.text[system.text.index('data-testid="traffic"') :]
    assert "/api/v1/account" in traffic  # the key's calls above, in the last hour's traffic
    routes = system.text[system.text.index('data-testid="routes"') : system.text.index('data-testid="traffic"')]
    assert "echo/local-echo" in routes and "closed" in routes  # the chat call's route, with its health


async def test_operator_sessions_end_when_the_admin_key_changes(
    make_settings: Callable[..., Settings],
    make_services: Callable[[Settings], Awaitable[Services]],
    make_client: Callable[[Services], httpx.AsyncClient],
) -> None:
    first = make_client(await make_services(make_settings()))
    await sign_in(first, ADMIN_KEY)
    cookie = first.cookies[COOKIE]
    changed = make_client(await make_services(make_settings(admin_key="another-admin-key-" + "9" * 24)))
    changed.cookies.set(COOKIE, cookie)
    assert (await changed.get("/admin")).status_code == 303


async def test_cookies_are_secure_behind_https(
    make_settings: Callable[..., Settings], make_services: Callable[[Settings], Awaitable[Services]]
) -> None:
    services = await make_services(make_settings(public_url="https://console.example.com"))
    app = create_app(services.settings, services=services, run_worker=False)
    account = await services.accounts.create_account("a", 10)
    _, key = await services.accounts.create_key(account.id)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://test") as client:
        form = await client.get("/sign-in")
        assert "Secure" in form.headers["set-cookie"]
        answer = await sign_in(client, key)
    cookie = next(value for value in answer.headers.get_list("set-cookie") if value.startswith(COOKIE))
    assert "Secure" in cookie


async def test_static_files_are_the_consoles_own(client: httpx.AsyncClient) -> None:
    script = await client.get("/static/console.js?v=1")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "immutable" in script.headers["cache-control"]
    for path in ("/static/../pages.py", "/static/%2e%2e/pages.py", "/static/nothing.js", "/static/vendor"):
        assert (await client.get(path)).status_code == 404, path


async def test_the_playground_quotes_what_a_request_would_reserve(
    client: httpx.AsyncClient, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account()
    await sign_in(client, account.key)
    token = await csrf_of(client, "/playground")
    headers = {"X-CSRF-Token": token}
    video = {"model": "local-video-t2v", "input": {"prompt": "waves", "duration": 7}}
    assert (await client.post("/playground/quote", json=video, headers=headers)).json()["credits"] == 7
    unfinished = await client.post("/playground/quote", json={"model": "local-3d-relief", "input": {}}, headers=headers)
    assert unfinished.json()["credits"] == 2 and unfinished.json()["incomplete"] == "Image is required"
    wrong = await client.post("/playground/quote", json={**video, "input": {"duration": 99}}, headers=headers)
    assert wrong.status_code == 400 and wrong.json()["error"] == "Duration must be at most 10"
    assert (await client.post("/playground/quote", json=video)).status_code == 403


async def no_inputs(url: str, *, kind: str) -> InputFile:
    raise AssertionError("no input files here")


@pytest.mark.parametrize("kind", ["image", "video"])
async def test_stored_images_and_videos_get_a_small_preview_once(
    services: Services, make_account: Callable[..., Awaitable[TestAccount]], kind: str
) -> None:
    account = await make_account()
    spec = services.catalog.resolve("local-image" if kind == "image" else "local-video-t2v")
    params = {"prompt": "a harbour"} if kind == "image" else {"prompt": "a harbour", "duration": 1, "fps": 12}
    job = await services.jobs.submit(
        Principal(account.key_id, account.id, None), Submission(spec, params, "auto", None)
    )
    request = MediaRequest(job.id, spec.id, spec.id, spec.category, job.params)
    result = await services.jobs.providers.media("local").submit(request, no_inputs)
    assert isinstance(result, Result)
    finished = await services.jobs.complete(job, result)
    assert finished is not None and finished.outputs
    output = finished.outputs[0]
    data, content_type = await services.jobs.storage.get(output["previewKey"])
    assert content_type == "image/webp"
    with Image.open(io.BytesIO(data)) as preview:
        assert max(preview.size) <= 480


async def test_a_result_without_readable_media_gets_no_preview(
    services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account()
    spec = services.catalog.resolve("local-image")
    job = await services.jobs.submit(
        Principal(account.key_id, account.id, None), Submission(spec, {"prompt": "x"}, "auto", None)
    )
    broken = Result(outputs=[Output(data=b"not an image", content_type="image/png", extension="png")])
    finished = await services.jobs.complete(job, broken)
    assert finished is not None and finished.status == "completed"
    assert "previewKey" not in finished.outputs[0]


async def fill_jobs(services: Services, account_id: str, count: int) -> None:
    """`count` finished image jobs, one a second, made in the database itself."""
    params = 'CAST(\'{"prompt": "bulk"}\' AS JSON)' if services.db.is_postgres else '\'{"prompt": "bulk"}\''
    statement = text(
        f"""
        WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :last)
        INSERT INTO jobs (id, account_id, key_id, model, category, type, mode, params, status, stage, credits,
                          attempts, deadline_at, cancel_requested, created_at, started_at, completed_at)
        SELECT 'job_bulk_' || CAST(i AS VARCHAR(12)), :account, NULL, 'local-image', 'image', 'image', 'auto',
               {params}, 'completed', 'completed', 1000, 1, 0, false,
               1000000 + i, 1000000 + i, 1000001 + i
        FROM n
        """
    )
    async with services.db.write() as conn:
        await conn.execute(statement, {"last": count - 1, "account": account_id})


async def test_the_gallery_pages_through_ten_thousand_jobs_by_index(
    client: httpx.AsyncClient, services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account()
    await fill_jobs(services, account.id, 10_000)
    await sign_in(client, account.key)
    first = await client.get("/generations")
    assert first.status_code == 200
    assert first.text.count('class="tile"') == 24 and "job_bulk_9999" in first.text
    older = re.search(r'href="(/generations\?[^"]*before=[^"]+)">Older', first.text)
    assert older
    second = await client.get(older[1].replace("&amp;", "&"))
    assert second.text.count('class="tile"') == 24
    assert "job_bulk_9975" in second.text and "job_bulk_9976" not in second.text

    query = select(jobs_table).where(jobs_table.c.account_id == account.id, jobs_table.c.status.in_(("completed",)))
    query = query.order_by(jobs_table.c.created_at.desc()).limit(25)
    async with services.db.read() as conn:
        sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        if services.db.is_sqlite:
            plan = " ".join(str(row[-1]) for row in await conn.execute(text("EXPLAIN QUERY PLAN " + sql)))
        else:
            await conn.execute(text("ANALYZE jobs"))
            plan = " ".join(str(row[0]) for row in await conn.execute(text("EXPLAIN " + sql)))
    assert re.search(r"ix_jobs_(account_id_)?created_at", plan), plan  # newest first, read off an index
    assert "Seq Scan" not in plan and "TEMP B-TREE" not in plan, plan  # no full scan, no sort


async def test_cancel_and_redeliver_from_the_generation_page(
    make_settings: Callable[..., Settings],
    make_services: Callable[[Settings], Awaitable[Services]],
    make_client: Callable[[Services], httpx.AsyncClient],
) -> None:
    services = await make_services(make_settings(outbound_allow="127.0.0.1/32"))
    client = make_client(services)
    account = await services.accounts.create_account("Webhooks", 100)
    record, key = await services.accounts.create_key(account.id)
    principal = Principal(record.id, account.id, None)
    spec = services.catalog.resolve("local-image")
    hooked = Submission(spec, {"prompt": "with a webhook"}, "auto", "http://127.0.0.1:9/hook")
    finished = await services.jobs.submit(principal, hooked)
    await services.jobs.complete(
        finished,
        await services.jobs.providers.media("local").submit(
            MediaRequest(finished.id, spec.id, spec.id, spec.category, finished.params), no_inputs
        ),
    )
    waiting = await services.jobs.submit(principal, Submission(spec, {"prompt": "never run"}, "auto", None))
    await sign_in(client, key)

    page = await client.get(f"/generations/{waiting.id}")
    assert "Cancel</button>" in page.text
    token = CSRF.search(page.text)[1]  # type: ignore[index]
    canceled = await client.post(f"/generations/{waiting.id}/cancel", data={"csrf": token})
    assert canceled.status_code == 303
    assert (await services.jobs.get(waiting.id, account.id)).status == "canceled"
    assert "Cancel</button>" not in (await client.get(f"/generations/{waiting.id}")).text
    assert (await services.accounts.get(account.id)).balance == 99_000  # one image paid, the canceled one refunded

    page = await client.get(f"/generations/{finished.id}")
    assert "http://127.0.0.1:9/hook" in page.text and "pending" in page.text
    again = await client.post(f"/generations/{finished.id}/redeliver", data={"csrf": token, "back": "/webhooks"})
    assert again.status_code == 303 and again.headers["location"] == "/webhooks"
    log = await client.get("/webhooks")
    assert finished.id in log.text
    no_hook = await client.post(f"/generations/{waiting.id}/redeliver", data={"csrf": token})
    assert no_hook.status_code == 409 and "no webhook_url" in no_hook.text


async def test_a_transcription_is_shown_as_its_text(
    client: httpx.AsyncClient, services: Services, make_account: Callable[..., Awaitable[TestAccount]]
) -> None:
    account = await make_account()
    spec = services.catalog.resolve("local-asr")
    audio = "data:audio/wav;base64," + base64.b64encode(long_wav(1)).decode()
    job = await services.jobs.submit(
        Principal(account.key_id, account.id, None), Submission(spec, {"audio": audio}, "auto", None)
    )
    await services.jobs.complete(job, Result(outputs=[], extra={"text": "hello <b>world</b>", "duration": 0.2}))
    await sign_in(client, account.key)
    for path in ("/generations", f"/generations/{job.id}"):
        page = await client.get(path)
        assert 'data-kind="transcript">hello &lt;b&gt;world&lt;/b&gt;<' in page.text, path


def test_console_routes_come_after_every_api_route(services: Services) -> None:
    # Routes match in order: the console's must add nothing to the matching of an API request.
    app = create_app(services.settings, services=services, run_worker=False)
    console_paths = {getattr(route, "path", "") for route in web.router.routes}

    def owner(entry: object) -> str:
        router = getattr(entry, "original_router", None)  # FastAPI keeps included routers whole
        if router is not None:
            return "console" if router is web.router else "api"
        path = getattr(entry, "path", "")
        return "console" if path in console_paths else "api" if path.startswith(("/v1/", "/api/v1/")) else "other"

    owners = [owner(entry) for entry in app.routes]
    assert "console" in owners and "api" in owners
    assert max(i for i, who in enumerate(owners) if who == "api") < min(
        i for i, who in enumerate(owners) if who == "console"
    )
    assert app.lane is not None and ("POST", "/v1/chat/completions") in app.lane.routes
