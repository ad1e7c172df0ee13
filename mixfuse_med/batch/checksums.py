"""Checksums of a patient's inputs: what lets a re-run skip a patient whose scans did not change."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def scan_checksum(files: Iterable[Path], base: Path) -> dict:
    """{"sha256", "files", "bytes"} of a scan's files: names (relative to ``base``) and contents.

    Renaming, adding or removing a slice changes it as surely as editing one.
    """
    digest = hashlib.sha256()
    count = size = 0
    for path in sorted(Path(p) for p in files):
        name = path.relative_to(base).as_posix() if path.is_relative_to(base) else path.name
        digest.update(f"{name}\0{file_sha256(path)}\n".encode("utf-8", "surrogateescape"))
        count += 1
        size += path.stat().st_size
    return {"sha256": digest.hexdigest(), "files": count, "bytes": size}
