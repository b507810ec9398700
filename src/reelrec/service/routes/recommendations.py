"""The lists (a known user, a new user from ratings, a profile) and predicted ratings.

``GET /users/{id}/recommendations`` is also answered by the fast lane
(:mod:`reelrec.service.hotpath`) for its plain, valid form: both call
:func:`reelrec.service.handlers.user_recommendations` and :func:`~reelrec.service.handlers.json_response`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from reelrec._defaults import LIST_NOVELTY
from reelrec.service import handlers
from reelrec.service.routes.common import served
from reelrec.service.routes.users import stored_ratings
from reelrec.service.schemas import (
    N,
    NewUserRequest,
    Novelty,
    Predictions,
    PredictRequest,
    ProfileId,
    Recommendations,
    UserId,
    errors,
)

router = APIRouter()

#: the path of the known-user list, the request the fast lane also answers
KNOWN_USER_PATH = "/users/{user_id}/recommendations"


@router.get(KNOWN_USER_PATH, response_model=Recommendations, tags=["users"], responses=errors(404))
async def user_recommendations(
    request: Request,
    user_id: UserId,
    n: N = 10,
    exclude_rated: bool = True,
    novelty: Novelty = LIST_NOVELTY,
) -> Response:
    """Top-n for a user the model was trained on (their rated movies excluded by default)."""
    s = served(request)
    return handlers.json_response(
        handlers.user_recommendations(s, s.user(user_id), n, exclude_rated, novelty)
    )


@router.post("/recommendations", response_model=Recommendations, tags=["users"], responses=errors(400, 404))
async def new_user(request: Request, body: NewUserRequest) -> Response:
    """Top-n for a **new** user from ``{movie id: rating}``, with no retraining: the user is
    folded into the frozen model (closed form for MF). No ratings: the most-rated movies."""
    return handlers.json_response(handlers.new_user(served(request), body.ratings, body.n, body.novelty))


@router.post("/predict", response_model=Predictions, tags=["users"], responses=errors(400, 404))
async def predict(request: Request, body: PredictRequest) -> dict[str, Any]:
    """Predicted ratings for (known user, movie) pairs."""
    return handlers.predict(served(request), ((p.user, p.movie) for p in body.pairs))


@router.get(
    "/profiles/{profile_id}/recommendations",
    response_model=Recommendations,
    tags=["profiles"],
    responses=errors(404, 503),
)
async def profile_recommendations(
    request: Request, profile_id: ProfileId, n: N = 10, novelty: Novelty = LIST_NOVELTY
) -> Response:
    """Top-n for a profile from its stored ratings (fold-in; popularity while it has none)."""
    stored = await stored_ratings(request, profile_id)
    return handlers.json_response(handlers.profile_recommendations(served(request), stored, n, novelty))
