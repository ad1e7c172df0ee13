"""All-or-nothing outputs: write under a temporary name in the same folder, then rename.

A reader (a viewer, a PACS sender, the batch runner) therefore sees either no
output or a complete one.  A process killed half-way leaves only entries named
``.mixfuse-partial.<host>.<pid>.<token>.<final name>``: hidden, recognisable
with :func:`is_temporary`, and removed by :func:`clean_stale_temporaries` once
the process that made them is gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path

from mixfuse_med.errors import OutputExistsError

TEMP_PREFIX = ".mixfuse-partial."


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def temporary_name(final: Path) -> Path:
    """A sibling of ``final`` that names this host and process (so stale ones can be found)."""
    return final.with_name(f"{TEMP_PREFIX}{_host_tag()}.{os.getpid()}.{secrets.token_hex(4)}.{final.name}")


def is_temporary(path: str | Path) -> bool:
    """True for a partial output (file or folder) that must be ignored by every reader."""
    return Path(path).name.startswith(TEMP_PREFIX)


def finished_files(root: str | Path) -> Iterator[Path]:
    """Files under ``root`` (recursively) outside any partial output, in a stable order.

    The walk every reader of an output folder uses (DICOM series listing,
    napari's reader, the PACS sender), so a half-written series is never taken
    for data.  Temporary folders are not entered at all.
    """
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not is_temporary(d))
        for name in sorted(files):
            path = Path(folder) / name
            if not is_temporary(name) and path.is_file():
                yield path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove partial outputs left in ``folder`` by dead processes of this host; return them.

    Temporaries of live processes (a concurrent export) and of other hosts
    (shared file systems) are left alone: they stay ignored by readers.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    host = _host_tag()
    for entry in folder.iterdir():
        if not is_temporary(entry):
            continue
        parts = entry.name[len(TEMP_PREFIX):].split(".", 3)
        if len(parts) < 4 or parts[0] != host or not parts[1].isdigit() or _pid_alive(int(parts[1])):
            continue
        _remove(entry)
        removed.append(entry)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def refuse_existing(paths: Iterable[str | Path], overwrite: bool) -> None:
    """Raise OutputExistsError for the first existing path unless overwriting was asked for."""
    if overwrite:
        return
    for path in paths:
        if os.path.lexists(path):
            raise OutputExistsError(path)


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk so the rename publishes complete data."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _publish(temp: Path, final: Path, overwrite: bool) -> None:
    if not overwrite and temp.is_file():
        try:  # a hard link never replaces an existing file, even one made a moment ago by another process
            os.link(temp, final)
        except FileExistsError:
            raise OutputExistsError(final) from None
        except OSError:
            pass  # no hard links on this file system: check, then rename
        else:
            temp.unlink()
            return
    if os.path.lexists(final):
        if not overwrite:
            raise OutputExistsError(final)
        if final.is_dir() and not final.is_symlink():
            # a folder cannot be replaced in one rename: move the old one aside first
            trash = temporary_name(final)
            os.replace(final, trash)
            os.replace(temp, final)
            _remove(trash)
            return
    os.replace(temp, final)


@contextlib.contextmanager
def atomic_path(final: str | Path, *, overwrite: bool = False, folder: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it to ``final`` if the block succeeds.

    ``folder=True`` yields an (empty, created) folder, e.g. for a DICOM series.
    On any error the temporary is removed and nothing at ``final`` changes.
    """
    final = Path(final)
    refuse_existing([final], overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = temporary_name(final)
    if folder:
        temp.mkdir()
    try:
        yield temp
        if folder:
            for child in temp.iterdir():
                _fsync(child)
        _fsync(temp)
        _publish(temp, final, overwrite)
        _fsync(final.parent)
    except BaseException:
        _remove(temp)
        raise


def write_text_atomic(path: str | Path, text: str, *, overwrite: bool = False) -> Path:
    """Write a small text file (report, manifest) all-or-nothing."""
    with atomic_path(path, overwrite=overwrite) as temp:
        temp.write_text(text)
    return Path(path)
