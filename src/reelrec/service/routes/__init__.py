"""The service's routes, one :class:`fastapi.APIRouter` per resource, each a thin layer that reads
the request, does the store's I/O in the thread pool and calls a handler
(:mod:`reelrec.service.handlers`):

* :mod:`.admin`: ``/health``, ``/metrics``, ``POST /admin/reload``
* :mod:`.movies`: ``/movies``, ``/genres``, ``/movies/{id}``, ``/movies/{id}/similar``
* :mod:`.recommendations`: the lists (known user, new user, profile) and ``POST /predict``
* :mod:`.users`: ``/users``, a user's ratings, and profiles with their stored ratings
* :mod:`.page`: the web page at ``/`` and its ``/static`` files

The routes find the served run, the store and the telemetry in ``request.app.state`` (set by
:func:`reelrec.service.app.create_app`; read through :mod:`.common`).
"""

from __future__ import annotations

from fastapi import APIRouter

from reelrec.service.routes import admin, movies, page, recommendations, users

#: the API's routers, in the order the OpenAPI document lists them
ROUTERS: tuple[APIRouter, ...] = (admin.router, movies.router, users.router, recommendations.router)

__all__ = ["ROUTERS", "page"]
