"""A batch run from start to end: find the patients, decide what is left to do, run it, record it.

Resuming is the normal case, not a special one: a patient whose outputs
are recorded complete, with inputs and settings unchanged, is skipped; a
failed or unfinished one is fused again; a complete output folder that a
killed run published but had no time to record is taken as it is.  Partial
outputs of killed workers are temporaries (``atomic``) and are removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import clean_stale_temporaries
from ..errors import InputError
from .checksums import scan_checksum
from .discovery import PatientCase, discover_patients
from .execution import make_executor
from .manifest import COMPLETE, MANIFEST_NAME, Manifest, now
from .naming import assign_names
from .resources import estimate_fusion_bytes
from .task import BatchSettings, PatientTask, read_record

LOCK_NAME = ".mixfuse-batch.lock"


@dataclass
class BatchReport:
    """What one run did, for the summary and the exit status."""

    manifest: Path
    where: str = ""
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # key -> reason

    @property
    def exit_status(self) -> int:
        return 1 if self.failed else 0

    def summary(self) -> str:
        total = len(self.done) + len(self.skipped) + len(self.failed)
        lines = [f"{total} patient(s): {len(self.done)} done, {len(self.skipped)} skipped (done before, "
                 f"inputs unchanged), {len(self.failed)} failed"]
        lines += [f"  failed {key}: {reason}" for key, reason in sorted(self.failed.items())]
        lines.append(f"manifest: {self.manifest}")
        return "\n".join(lines)


@contextlib.contextmanager
def exclusive(out_root: Path) -> Iterator[None]:
    """One batch run per output root at a time (the lock dies with its process, so resuming works)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; one run at a time is then up to the user
        yield
        return
    out_root.mkdir(parents=True, exist_ok=True)
    with open(out_root / LOCK_NAME, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(out_root, "another mixfuse batch is writing to this output folder") from None
        yield


def _check_folders(root: Path, out_root: Path) -> None:
    if not root.is_dir():
        raise InputError(root, "not a folder (the batch root holds one folder per patient)")
    if out_root == root or out_root.is_relative_to(root):
        raise InputError(out_root, f"the output folder lies inside the batch root {root}: it would be read "
                                   "as a patient, and inputs are never written to; choose another --out")
    if root.is_relative_to(out_root):
        raise InputError(out_root, f"the output folder contains the batch root {root}; choose another --out")


def run_batch(root: str | Path, out_root: str | Path, settings: BatchSettings, *,
              scheduler: str | None = None, workers: int | None = None,
              threads_per_worker: int | None = None, modality: str | None = None,
              allow_id_mismatch: bool = False, show_progress: bool = True,
              say: Callable[[str], None] | None = None) -> BatchReport:
    """Fuse every patient folder of ``root`` into ``out_root``; see the module docs for resuming."""
    from tqdm import tqdm

    say = say or (lambda text: tqdm.write(text, file=sys.stderr))
    root, out_root = Path(root).resolve(), Path(out_root).resolve()
    _check_folders(root, out_root)
    with exclusive(out_root):
        clean_stale_temporaries(out_root)
        manifest = Manifest.load(out_root)
        if manifest.root and manifest.root != str(root):
            raise InputError(manifest.path, f"this output folder records the batch of {manifest.root}, not "
                                            f"{root}; choose another --out")
        manifest.root = str(root)
        report = BatchReport(manifest=manifest.path)
        run = {"id": f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}", "started": now(),
               "argv": sys.argv[1:], "settings": settings.fingerprint()}
        manifest.runs.append(run)

        with tqdm(desc="reading patient folders", unit="patient", disable=not show_progress,
                  leave=False) as bar:
            cases = discover_patients(root, modality=modality, allow_id_mismatch=allow_id_mismatch,
                                      progress=lambda done, total: _advance(bar, done, total))
        names = assign_names({c.key: c.patient_id for c in cases}, manifest.output_names(),
                             reserved=(MANIFEST_NAME, LOCK_NAME))
        tasks = []
        for case in tqdm(cases, desc="checking inputs", unit="patient", disable=not show_progress,
                         leave=False):
            task = _plan(case, names[case.key], manifest, settings, out_root, run["id"], report)
            if task is not None:
                tasks.append(task)
        manifest.save()
        if not cases:
            say(f"no patient folders in {root}")

        with make_executor(scheduler, workers, threads_per_worker, say) as executor:
            report.where = executor.description
            threads = getattr(executor, "threads", None)
            if threads is not None:
                tasks = [dataclasses.replace(t, settings=dataclasses.replace(t.settings, threads=threads))
                         for t in tasks]
            if tasks:
                say(f"fusing {len(tasks)} patient(s) on {report.where}")
            with tqdm(total=len(tasks), desc="fusing", unit="patient", disable=not show_progress) as bar:
                def record(result: dict) -> None:
                    _record(result, manifest, run["id"], report, say)
                    bar.update(1)
                    bar.set_postfix(failed=len(report.failed), refresh=False)

                executor.run(tasks, record)

        run.update(finished=now(), done=len(report.done), skipped=len(report.skipped),
                   failed=len(report.failed), where=report.where)
        manifest.save()
    return report


def _advance(bar, done: int, total: int) -> None:
    bar.total = total
    bar.update(done - bar.n)


def _plan(case: PatientCase, name: str, manifest: Manifest, settings: BatchSettings, out_root: Path,
          run_id: str, report: BatchReport) -> PatientTask | None:
    """The task for one patient, or None when it fails before fusing or needs no work."""
    entry = manifest.entry(case.key)
    entry.update(folder=str(case.folder), patient_id=case.patient_id, output=name, notes=list(case.notes))
    if case.error is None:
        try:
            checksums = {what: {"path": str(scan.path), "format": scan.format,
                                **scan_checksum(scan.files, case.folder)}
                         for what, scan in (("mri", case.mri), ("functional", case.functional))}
        except OSError as err:
            case.error = f"{err.filename or case.folder}: cannot read ({err.strerror or err})"
    if case.error is not None:
        entry.update(status="failed", error=case.error, run=run_id, finished=now(),
                     attempts=entry.get("attempts", 0) + 1)
        entry.pop("detail", None)
        report.failed[case.key] = case.error
        return None
    fingerprint = settings.fingerprint()
    same = {"modality": case.modality, "checksums": _sums(checksums), "settings": fingerprint}
    entry.update(modality=case.modality, inputs=checksums)
    if entry.get("status") in COMPLETE and _same(entry, same) and _outputs_exist(entry, out_root):
        entry.update(status="skipped", run=run_id, error=None)
        report.skipped.append(case.key)
        return None
    record = read_record(out_root / name)
    if record and record.get("key") == case.key and _sums(record.get("checksums", {})) == same["checksums"] \
            and record.get("settings") == fingerprint and _outputs_exist(record, out_root):
        entry.update(status="done", run=run_id, error=None, outputs=record["outputs"],
                     timings_seconds=record.get("timings_seconds", {}), settings=fingerprint,
                     checksums=same["checksums"], finished=now(),
                     notes=entry["notes"] + ["complete outputs of an interrupted run, recorded as they are"])
        report.done.append(case.key)
        return None
    if entry.get("status") in COMPLETE:
        entry["notes"].append("inputs or settings changed since it was done: fused again")
    entry.update(status="pending", error=None)
    mri_shape, functional_shape = case.mri.shape, case.functional.shape
    return PatientTask(key=case.key, mri=str(case.mri.path), functional=str(case.functional.path),
                       modality=case.modality, out_root=str(out_root), output=name, checksums=checksums,
                       memory_bytes=estimate_fusion_bytes(mri_shape, functional_shape,
                                                          settings.options.get("batch_size", 8)),
                       settings=settings)


def _sums(checksums: dict) -> dict:
    return {what: item.get("sha256") for what, item in checksums.items()}


def _same(entry: dict, wanted: dict) -> bool:
    return (entry.get("modality") == wanted["modality"] and entry.get("checksums") == wanted["checksums"]
            and entry.get("settings") == wanted["settings"])


def _outputs_exist(entry: dict, out_root: Path) -> bool:
    outputs = entry.get("outputs") or {}
    return bool(outputs) and all((out_root / path).exists() for path in outputs.values())


def _record(result: dict, manifest: Manifest, run_id: str, report: BatchReport,
            say: Callable[[str], None]) -> None:
    key = result["key"]
    entry = manifest.entry(key)
    common = {"run": run_id, "finished": now(), "attempts": entry.get("attempts", 0) + 1,
              "worker": result.get("worker"), "wall_seconds": result.get("wall_seconds"),
              "model_loads_in_worker": result.get("model_loads_in_worker")}
    if result["status"] == "done":
        inputs = entry.get("inputs", {})
        manifest.update(key, status="done", error=None, detail=None, outputs=result["outputs"],
                        timings_seconds=result.get("timings_seconds", {}), checksums=_sums(inputs),
                        settings=manifest.runs[-1]["settings"], **common)
        report.done.append(key)
    else:
        manifest.update(key, status="failed", error=result.get("error"), detail=result.get("detail"),
                        **common)
        report.failed[key] = result.get("error", "unknown error")
        say(f"failed {key}: {result.get('error')}")
