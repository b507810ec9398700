"""The service's request and response models, parameter types and error answers.

Request bodies are :class:`Strict` (unknown fields refused, no type coercion); every error answer
is :class:`ErrorBody` (``{"detail": "<one line>"}``), listed per route with :func:`errors`. The
rating fields' range is the served run's scale, written into the OpenAPI document by
:func:`with_rating_range`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path as PathParam
from fastapi import Query
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
)

from reelrec._defaults import LIST_NOVELTY

#: the largest request body accepted, in bytes
MAX_BODY = 1 << 20
MAX_RATINGS = 5000
MAX_PAIRS = 10000

# ---------------------------------------------------------------------- path and query parameters
MovieId = Annotated[
    str, PathParam(min_length=1, max_length=255, description="a movie id of the run's catalogue")
]
ProfileId = Annotated[
    str, PathParam(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="a profile id from POST /profiles")
]
UserId = Annotated[str, PathParam(min_length=1, max_length=255)]
N = Annotated[int, Query(ge=1, le=100, description="list length, 1..100")]
Novelty = Annotated[
    float,
    Query(
        ge=-5,
        le=5,
        description="re-rank against popularity: >0 favours less-watched movies, <0 the mainstream, "
        "0 = the model's ranking as it is",
    ),
]


# ---------------------------------------------------------------------- building blocks
def json_int(low: int = -(2**53), high: int = 2**53) -> Any:
    """A JSON integer in ``low..high``: ``5`` or ``5.0`` (JSON Schema's integer), never ``true``,
    ``"5"`` or ``5.5``; the range is checked and documented. The default range is what every
    JSON parser holds exactly (send larger ids as strings)."""

    def not_bool(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("Input should be a valid integer, not true/false")
        return value

    def in_range(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(f"Input should be in {low}..{high}")
        return value

    return Annotated[
        int,
        Field(strict=False),
        BeforeValidator(not_bool),
        AfterValidator(in_range),
        WithJsonSchema({"type": "integer", "minimum": low, "maximum": high}),
    ]


JsonInt = json_int()


class Strict(BaseModel):
    """A request body: unknown fields refused, and no type coercion (``true`` is not a rating or
    an id, ``"4"`` is not a number)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorBody(BaseModel):
    """Every error answer: one line saying what is wrong."""

    detail: str


ERROR_TEXT = {
    400: "the request body could not be read",
    403: "reload disabled, or a missing or wrong X-Admin-Token",
    404: "an unknown movie, user or profile id",
    413: f"the request body is larger than {MAX_BODY} bytes (chunked bodies included)",
    422: "invalid input: a parameter or body field of the wrong type, range or shape",
    503: "the ratings store is unavailable",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for these error statuses (body: :class:`ErrorBody`)."""
    return {code: {"model": ErrorBody, "description": ERROR_TEXT[code]} for code in codes}


def check_path(value: str | None) -> str | None:
    """A run path within the file system's limits (checked before the path is used)."""
    if value is None:
        return None
    if "\x00" in value:
        raise ValueError("the run path contains a NUL character")
    if any(len(part.encode("utf-8", "surrogatepass")) > 255 for part in value.split("/")):
        raise ValueError("a component of the run path is longer than 255 bytes")
    return value


def with_rating_range(schema: dict[str, Any], low: float, high: float) -> None:
    """Write the rating scale into the request schemas that carry ratings."""
    shapes = schema.get("components", {}).get("schemas", {})
    rating = shapes.get("RatingBody", {}).get("properties", {}).get("rating")
    ratings = shapes.get("NewUserRequest", {}).get("properties", {}).get("ratings", {})
    for spot in (rating, ratings.get("additionalProperties")):
        if isinstance(spot, dict):
            spot.update(minimum=low, maximum=high)


# ---------------------------------------------------------------------- responses
class Health(BaseModel):
    status: str
    model: str
    predicts_ratings: bool = Field(description="scores are predicted ratings (else ranking scores)")
    dataset: str | None
    schema_version: int
    run: str
    loaded_at: str
    n_users: int
    n_items: int
    rating_scale: dict[str, float | None]


class Movie(BaseModel):
    movie_id: int | str
    title: str | None
    year: int | None
    genres: list[str]
    n_ratings: int = Field(description="ratings the model learned this movie from")


class MovieList(BaseModel):
    total: int
    movies: list[Movie]


class Scored(BaseModel):
    movie_id: int | str
    title: str | None
    year: int | None
    genres: list[str]
    score: float = Field(description="predicted rating (rating models) or ranking score")
    reason: str | None = Field(None, description='e.g. "because you rated Fargo (1996) 5★"')
    because: int | str | None = Field(None, description="the movie the reason names")


class Recommendations(BaseModel):
    model: str
    personalised: bool = Field(description="false when the list is the popularity fallback")
    ranked_by: str = Field(
        description='how the list is ordered, e.g. "predicted rating + popularity prior (novelty -0.25)"'
    )
    items: list[Scored]


class Prediction(BaseModel):
    user: int | str
    movie: int | str
    rating: float


class Predictions(BaseModel):
    model: str
    predictions: list[Prediction]


class ProfileRating(Movie):
    rating: float


class Profile(BaseModel):
    id: str
    ratings: list[ProfileRating]


class UserSummary(BaseModel):
    user_id: int | str
    n_ratings: int


# ---------------------------------------------------------------------- requests
class NewUserRequest(Strict):
    ratings: dict[Annotated[str, Field(min_length=1, max_length=255)], float] = Field(
        default_factory=dict,
        description="{movie id: rating} on the run's rating scale; empty gives the popularity list",
        max_length=MAX_RATINGS,
    )
    n: json_int(1, 100) = 10  # type: ignore[valid-type]
    novelty: float = Field(LIST_NOVELTY, ge=-5, le=5, description="as the query parameter of the GET lists")


IdValue = JsonInt | Annotated[str, Field(min_length=1, max_length=255)]


class Pair(Strict):
    user: IdValue
    movie: IdValue


class PredictRequest(Strict):
    pairs: list[Pair] = Field(min_length=1, max_length=MAX_PAIRS)


class RatingBody(Strict):
    rating: float = Field(description="on the run's rating scale (its range is in this schema)")


class ReloadRequest(Strict):
    run: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="run directory to switch to (default: reload the current one); at most 4096 "
        "characters, 255 bytes per component",
    )

    _path = field_validator("run")(check_path)
