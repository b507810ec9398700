"""People: trained users and their ratings, and profiles (new users) with their stored ratings."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from starlette.concurrency import run_in_threadpool

from reelrec.errors import UnknownIdError
from reelrec.service import handlers
from reelrec.service.routes.common import served, store
from reelrec.service.schemas import (
    MovieId,
    Profile,
    ProfileId,
    ProfileRating,
    RatingBody,
    UserId,
    UserSummary,
    errors,
)

router = APIRouter()


async def stored_ratings(request: Request, profile_id: str) -> dict[str, float]:
    """A profile's stored ratings (404 for an unknown profile), read in the thread pool."""
    ratings = store(request)
    if not await run_in_threadpool(ratings.has_profile, profile_id):
        raise UnknownIdError(f"unknown profile {profile_id!r}")
    return await run_in_threadpool(ratings.get_ratings, profile_id)


# ---------------------------------------------------------------------- trained users
@router.get("/users", response_model=list[UserSummary], tags=["users"])
async def users(request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict[str, Any]]:
    """Users the model was trained on, most active first (to pick one in the page)."""
    return handlers.users(served(request), limit)


@router.get(
    "/users/{user_id}/ratings", response_model=list[ProfileRating], tags=["users"], responses=errors(404)
)
async def user_ratings(
    request: Request, user_id: UserId, limit: Annotated[int, Query(ge=1, le=1000)] = 20
) -> list[dict[str, Any]]:
    """A known user's training ratings, best first."""
    return handlers.user_ratings(served(request), user_id, limit)


# ---------------------------------------------------------------------- profiles
@router.post("/profiles", status_code=201, response_model=Profile, tags=["profiles"], responses=errors(503))
async def new_profile(request: Request) -> dict[str, Any]:
    """A new, empty profile with a random id (the web page keeps it in a cookie)."""
    return {"id": await run_in_threadpool(store(request).create_profile), "ratings": []}


@router.get("/profiles/{profile_id}", response_model=Profile, tags=["profiles"], responses=errors(404, 503))
async def get_profile(request: Request, profile_id: ProfileId) -> dict[str, Any]:
    """A profile's stored ratings."""
    stored = await stored_ratings(request, profile_id)
    return handlers.profile(served(request), profile_id, stored)


@router.put(
    "/profiles/{profile_id}/ratings/{movie_id}",
    response_model=Profile,
    tags=["profiles"],
    responses=errors(400, 404, 503),
)
async def rate(
    request: Request, profile_id: ProfileId, movie_id: MovieId, body: Annotated[RatingBody, Body()]
) -> dict[str, Any]:
    """Store (or change) a rating. When this answers, the rating is committed to disk."""
    key, value = handlers.rating_to_store(served(request), movie_id, body.rating)
    await run_in_threadpool(store(request).set_rating, profile_id, key, value)
    return await get_profile(request, profile_id)


@router.delete(
    "/profiles/{profile_id}/ratings/{movie_id}",
    response_model=Profile,
    tags=["profiles"],
    responses=errors(404, 503),
)
async def unrate(request: Request, profile_id: ProfileId, movie_id: MovieId) -> dict[str, Any]:
    """Remove a rating."""
    key = handlers.stored_movie_id(served(request), movie_id)
    if not await run_in_threadpool(store(request).delete_rating, profile_id, key):
        raise UnknownIdError(f"profile {profile_id!r} has no rating for movie {movie_id!r}")
    return await get_profile(request, profile_id)
