"""What every router reads from the app: the served run and the ratings store."""

from __future__ import annotations

from fastapi import Request

from reelrec.service.state import Served
from reelrec.service.store import RatingStore


def served(request: Request) -> Served:
    """The run the app serves now (a reload swaps it; a request keeps the one it started with)."""
    return request.app.state.served


def store(request: Request) -> RatingStore:
    """The app's ratings store (its calls block: run them in the thread pool)."""
    return request.app.state.store
