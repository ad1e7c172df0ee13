"""Errors users see: each names the file and the problem, never a library traceback."""

from __future__ import annotations

from pathlib import Path


class MixfuseError(Exception):
    """Base of the errors mixfuse-med raises on purpose."""


class InputError(MixfuseError, ValueError):
    """An input file or folder that cannot be used, and why."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class OutputExistsError(MixfuseError, FileExistsError):
    """An output would overwrite an existing file and overwriting was not asked for."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        super().__init__(f"{path}: already exists (pass overwrite=True / --overwrite to replace it)")


class ExportError(MixfuseError):
    """Writing or sending an output failed."""


class ResourceError(MixfuseError):
    """A job needs more of the machine (memory) than it has."""
