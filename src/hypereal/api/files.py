"""Output files kept in the local data directory, served under unguessable names."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import FileResponse

from hypereal.api.deps import ServicesDep
from hypereal.errors import NotFound
from hypereal.storage import LocalStorage, content_type_for

root_router = APIRouter(tags=["files"])


@root_router.get("/files/{key:path}", include_in_schema=False)
async def get_file(key: str, services: ServicesDep) -> FileResponse:
    storage = services.jobs.storage
    if not isinstance(storage, LocalStorage):
        raise NotFound("File not found")
    path = storage.path_for(key)
    if not path.is_file():
        raise NotFound("File not found")
    return FileResponse(
        path,
        media_type=content_type_for(path.suffix.lstrip(".")),
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )
