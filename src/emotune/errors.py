"""Exceptions with messages a user can act on: each names the file (or line) and the problem."""
from __future__ import annotations

from pathlib import Path


class EmotuneError(Exception):
    """Base class of every error emotune raises on purpose."""


class BadInputError(EmotuneError):
    """An input item (image, CSV line, folder) cannot be used; `where` names it."""

    def __init__(self, where: str | Path, problem: str):
        self.where = str(where)
        self.problem = problem
        super().__init__(f"{self.where}: {problem}")


class LabelError(BadInputError):
    """A label name that no taxonomy knows, or that the model cannot output."""


class ConfigError(EmotuneError):
    """A training/evaluation option that is missing, unknown or inconsistent."""


class CheckpointError(EmotuneError):
    """A checkpoint or model card that is missing, corrupt or does not match its weights."""


class OutputError(ConfigError):
    """An output path that cannot be written (a folder where a file is wanted, a read-only place, /proc, a device):
    found before any work, so that a long run never ends with nowhere to put its results."""
