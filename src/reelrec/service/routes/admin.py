"""The service itself: health, telemetry, and switching runs without a restart."""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from reelrec.errors import ReelrecError
from reelrec.service.routes.common import served, store
from reelrec.service.schemas import Health, ReloadRequest, errors
from reelrec.service.state import Served

log = logging.getLogger(__name__)

router = APIRouter(tags=["service"])


@router.get("/health", response_model=Health)
async def health(request: Request) -> dict[str, Any]:
    """The served run: model, dataset, artifact schema version and when it was loaded."""
    return served(request).health()


@router.get("/metrics", responses=errors(503))
async def metrics(request: Request) -> dict[str, Any]:
    """Request counts per route, status classes, and p50/p99 latency over recent requests."""
    snap = request.app.state.telemetry.snapshot()
    snap["store"] = await run_in_threadpool(store(request).counts)
    return snap


def token_refusal(admin_token: str | None, given: str | None) -> str | None:
    """Why a reload with header value ``given`` is refused (``None``: allowed). Compared as bytes
    in constant time; a non-ASCII header is a mismatch, not an error (Starlette decodes header
    bytes as latin-1, so encoding back gives the bytes sent)."""
    if not admin_token:
        return "reload is disabled; start the service with --admin-token"
    sent = (given or "").encode("latin-1", "replace")
    if not given or not hmac.compare_digest(sent, admin_token.encode("utf-8")):
        return "missing or wrong X-Admin-Token"
    return None


@router.post("/admin/reload", response_model=Health, responses=errors(400, 403))
async def reload(
    request: Request,
    body: ReloadRequest | None = None,
    x_admin_token: Annotated[str | None, Header()] = None,
) -> Any:
    """Switch to another run directory (or reload this one) without dropping requests:
    the new run is verified and loaded aside, then swapped in; requests already running
    finish on the old one. Needs ``X-Admin-Token`` (``reelrec serve --admin-token``).
    With several workers the one that answers has switched; the others follow within
    about a second (``X-Reelrec-Worker`` names the worker that answered)."""
    state = request.app.state
    refusal = token_refusal(state.admin_token, x_admin_token)
    if refusal is not None:
        return JSONResponse({"detail": refusal}, status_code=403)
    target = Path(body.run) if body and body.run else served(request).run_dir

    def load() -> Served:
        with state.reload_lock:
            return Served.load(target, ann=state.ann)

    try:
        fresh = await run_in_threadpool(load)
    except (ReelrecError, OSError, ValueError) as exc:
        detail = (
            str(exc) if isinstance(exc, ReelrecError) else f"cannot load run {str(target)[:200]!r} ({exc})"
        )
        return JSONResponse({"detail": detail}, status_code=422)
    state.served = fresh
    if state.after_reload is not None:
        state.after_reload(fresh)
    log.info("now serving %s", fresh.run_dir)
    return fresh.health()
