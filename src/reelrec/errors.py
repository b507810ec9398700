"""Exception types raised at reelrec's public boundaries.

Every error a user can cause (bad file, unknown id, tampered model) is a :class:`ReelrecError`
with a one-line message that says what is wrong and what to do; the CLI prints that line and
exits non-zero without a traceback.
"""

from __future__ import annotations


class ReelrecError(Exception):
    """Base class of every error reelrec raises on purpose."""


class DataError(ReelrecError):
    """A ratings, item or user file is missing, malformed or inconsistent."""


class DownloadError(ReelrecError):
    """A dataset could not be downloaded or failed its checksum."""


class UnknownIdError(ReelrecError, KeyError):
    """A raw user or item id is not in the model's vocabulary."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ArtifactError(ReelrecError):
    """A run directory is missing, tampered with or from an incompatible version."""


class OutputError(ReelrecError):
    """An output path reelrec refuses to write: it would replace or delete files it did not create."""


class ConfigError(ReelrecError, ValueError):
    """A configuration value is invalid."""
