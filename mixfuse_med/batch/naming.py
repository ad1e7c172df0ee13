"""Output folder names from patient IDs: safe on every file system, never colliding.

A PatientID is free text from a DICOM header ("../../etc", "CON", "Müller/1",
"" ...).  It becomes one path component of ASCII letters, digits, ``.``,
``_`` and ``-``, not hidden, not ``.``/``..``, not a Windows device name; two
patients whose names would clash (also when only letter case differs, for
case-insensitive file systems) both get a short hash of their own folder
name added, so the result does not depend on which was seen first.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping

MAX_LENGTH = 64
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)),
                    *(f"LPT{i}" for i in range(10))}


def safe_name(raw: str) -> str:
    """One safe path component for ``raw`` (a PatientID or folder name); never empty."""
    text = unicodedata.normalize("NFKD", str(raw)).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text)
    text = re.sub(r"\.{2,}", ".", text).strip("._-")[:MAX_LENGTH].rstrip("._-")
    if not text:
        return "patient"
    if text.split(".")[0].upper() in _WINDOWS_DEVICES:
        return f"patient_{text}"
    return text


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def assign_names(wanted: Mapping[str, str], taken: Mapping[str, str] | None = None,
                 reserved: Iterable[str] = ()) -> dict[str, str]:
    """Output folder name per patient key.

    ``wanted`` maps each patient key (its input folder name, unique) to the
    raw ID its output should be named after.  ``taken`` maps keys to names
    already given in an earlier run: those are kept as they are, so a
    resumed run writes where the first one did.  ``reserved`` are names the
    output root uses itself (the manifest).
    """
    taken = dict(taken or {})
    names = {key: taken[key] for key in wanted if key in taken}
    used = {name.casefold() for name in taken.values()} | {r.casefold() for r in reserved}
    groups: dict[str, list[str]] = defaultdict(list)
    for key in wanted:
        if key not in names:
            groups[safe_name(wanted[key]).casefold()].append(key)
    for folded, keys in sorted(groups.items()):
        clash = len(keys) > 1 or folded in used
        for key in sorted(keys):
            base = safe_name(wanted[key])
            name = f"{base}-{short_hash(key)}" if clash else base
            while name.casefold() in used:  # a hash clash with a taken name: extremely unlikely
                name = f"{base}-{short_hash(name)}"
            names[key] = name
            used.add(name.casefold())
    return names
