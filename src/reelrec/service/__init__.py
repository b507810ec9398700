"""The recommendation service: REST API, web page and ratings store (``reelrec serve``)."""

from reelrec.service.store import RatingStore, default_store_url

__all__ = ["RatingStore", "create_app", "default_store_url"]


def create_app(*args, **kwargs):
    """See :func:`reelrec.service.app.create_app` (imported lazily: FastAPI loads on demand)."""
    from reelrec.service.app import create_app as _create_app

    return _create_app(*args, **kwargs)
