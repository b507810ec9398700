"""The web page (``/``, not in the API document) and its static files (``/static``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

router = APIRouter(include_in_schema=False)

with resources.as_file(resources.files("reelrec.service") / "static") as _static_dir:
    STATIC_DIR = Path(_static_dir)
INDEX_HTML = STATIC_DIR / "index.html"


def static_files() -> StaticFiles:
    """The app mounted at ``/static``: the page's CSS and scripts."""
    return StaticFiles(directory=str(STATIC_DIR))


@router.get("/")
async def page() -> FileResponse:
    """The page: search, rate, and a list that follows the ratings."""
    return FileResponse(INDEX_HTML, media_type="text/html")
