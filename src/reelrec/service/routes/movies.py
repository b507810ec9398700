"""The catalogue: search, genres, one movie, similar movies."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from reelrec.service import handlers
from reelrec.service.routes.common import served
from reelrec.service.schemas import Movie, MovieId, MovieList, N, Scored, errors

router = APIRouter(tags=["movies"])


@router.get("/movies", response_model=MovieList, responses=errors(404))
async def movies(
    request: Request,
    query: Annotated[str, Query(max_length=200, description="part of the title, any case")] = "",
    genre: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Search the catalogue by title and genre, most-rated first."""
    return handlers.movies(served(request), query, genre, limit, offset)


@router.get("/genres", response_model=list[str])
async def genres(request: Request) -> list[str]:
    """Every genre of the catalogue."""
    return served(request).genres


@router.get("/movies/{movie_id}", response_model=Movie, responses=errors(404))
async def movie(request: Request, movie_id: MovieId) -> dict[str, Any]:
    """One movie."""
    return handlers.movie(served(request), movie_id)


@router.get("/movies/{movie_id}/similar", response_model=list[Scored], responses=errors(404))
async def similar(request: Request, movie_id: MovieId, n: N = 10) -> Response:
    """Movies whose embeddings are most similar (cosine) to this one's."""
    return handlers.json_response(handlers.similar(served(request), movie_id, n))
