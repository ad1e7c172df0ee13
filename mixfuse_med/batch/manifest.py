"""The run manifest: one JSON file in the output root, the batch's memory between runs.

Per patient it holds the status (``pending``, ``done``, ``failed``,
``skipped``), the input checksums, the output folder and files, the stage
timings and the error.  Only the client process writes it, whole and
atomically (``atomic.write_text_atomic``) after every patient, so a killed
run loses at most the patients that were in flight.  ``done`` and
``skipped`` both mean the outputs are complete: ``skipped`` says the last run
found them done already, with the same inputs and settings, and left them
alone.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import write_text_atomic
from ..errors import InputError

MANIFEST_NAME = "manifest.json"
FORMAT = "mixfuse-batch-manifest/1"
STATUSES = ("pending", "done", "failed", "skipped")
COMPLETE = ("done", "skipped")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds")


@dataclass
class Manifest:
    """The manifest of one output root, in memory; :meth:`save` publishes it."""

    path: Path
    root: str = ""
    created: str = field(default_factory=now)
    runs: list[dict] = field(default_factory=list)
    patients: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def load(cls, out_root: str | Path) -> Manifest:
        """The manifest in ``out_root``, or an empty one when there is none yet."""
        path = Path(out_root) / MANIFEST_NAME
        if not path.exists():
            return cls(path=path)
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT!r}")
            return cls(path=path, root=data.get("root", ""), created=data.get("created", now()),
                       runs=list(data.get("runs", [])), patients=dict(data.get("patients", {})))
        except (OSError, ValueError, AttributeError) as err:
            raise InputError(path, f"unreadable batch manifest ({err}); move it away to start afresh")\
                from None

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "root": self.root, "created": self.created, "updated": now(),
                           "runs": self.runs, "patients": self.patients}, indent=2, default=str) + "\n"

    def save(self) -> Path:
        return write_text_atomic(self.path, self.to_json(), overwrite=True)

    def entry(self, key: str) -> dict:
        return self.patients.setdefault(key, {"status": "pending", "attempts": 0})

    def update(self, key: str, **values) -> dict:
        """Change one patient's record and publish the manifest at once."""
        entry = self.entry(key)
        entry.update(values)
        entry["updated"] = now()
        self.save()
        return entry

    def output_names(self) -> dict[str, str]:
        """Output folder name per patient already named in an earlier run (kept as they are)."""
        return {key: e["output"] for key, e in self.patients.items() if e.get("output")}

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for entry in self.patients.values():
            counts[entry.get("status", "pending")] = counts.get(entry.get("status", "pending"), 0) + 1
        return counts
