"""Output files kept in the local data directory.

By default a file is served to whoever has its URL: names carry 192 random bits, and the
URL is what clients put in an <img> tag or hand to a player, which cannot send keys. With
HYPEREAL_PRIVATE_FILES=true a file is served only to keys of the account that owns it;
anyone else gets 404, as if it did not exist.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import FileResponse

from hypereal.api.deps import ServicesDep, current_principal
from hypereal.errors import NotFound
from hypereal.storage import LocalStorage, content_type_for

root_router = APIRouter(tags=["files"])


@root_router.get("/files/{key:path}", include_in_schema=False)
async def get_file(key: str, request: Request, services: ServicesDep) -> FileResponse:
    storage = services.jobs.storage
    if not isinstance(storage, LocalStorage):
        raise NotFound("File not found")
    if services.settings.private_files:
        principal = await current_principal(request)
        if storage.owner_of(key) != principal.account_id:
            raise NotFound("File not found")
    path = storage.path_for(key)
    if not path.is_file():
        raise NotFound("File not found")
    cache = "private, max-age=3600" if services.settings.private_files else "public, max-age=31536000, immutable"
    return FileResponse(path, media_type=content_type_for(path.suffix.lstrip(".")), headers={"Cache-Control": cache})
