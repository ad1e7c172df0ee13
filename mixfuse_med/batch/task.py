"""What a worker does for one patient: ``fuse_study`` into a folder that appears whole or not at all.

Runs in a Dask worker process (or in the client for ``--workers 0``).  The
network is loaded once per process and kept (:func:`worker_model`).  Every
failure comes back as a result with a one-line reason, never as an
exception, so one bad patient cannot stop the batch; the client alone
writes the manifest.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..atomic import atomic_path
from ..errors import MixfuseError
from .resources import check_memory, is_out_of_memory, out_of_memory_message

RECORD_NAME = "mixfuse_batch.json"  # inside each patient's output folder: what made it

_MODELS: dict[tuple[str | None, str], object] = {}
_MODEL_LOCK = threading.Lock()
_LOADS = {"count": 0}


@dataclass(frozen=True)
class BatchSettings:
    """The choices of a batch run that shape every patient's outputs."""

    weights: str | None = None  # checkpoint; None: the shipped weights
    weights_sha256: str = ""  # which weights exactly (a re-run with others redoes the patients)
    device: str | None = None  # torch device; None: CUDA when present, else CPU
    formats: tuple[str, ...] = ("nifti", "dicom")
    register: bool = True
    allow_raw_activity: bool = False
    deidentify: bool = False
    options: dict = field(default_factory=dict)  # FusionOptions fields (batch_size, colormap, ...)
    threads: int | None = None  # torch/SimpleITK threads per worker; None: CPUs / worker threads

    def fingerprint(self) -> dict:
        """What must match for a done patient to count as up to date (paths and threads do not)."""
        record = asdict(self)
        for key in ("weights", "device", "threads"):
            record.pop(key)
        record["formats"] = sorted(self.formats)
        return record


@dataclass(frozen=True)
class PatientTask:
    """One patient to fuse: the inputs, where the outputs go, what the client already knows."""

    key: str
    mri: str
    functional: str
    modality: str
    out_root: str
    output: str  # folder name under out_root
    checksums: dict
    memory_bytes: int
    settings: BatchSettings


def worker_model(weights: str | None, device: str | None):
    """The network for this process, loaded on first use and kept for every later patient."""
    from ..inference import default_device, load_pretrained

    device = str(device or default_device())
    key = (weights, device)
    with _MODEL_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load_pretrained(device, weights)
            _LOADS["count"] += 1
        return _MODELS[key]


def _configure_threads(threads: int | None) -> int:
    """Give torch and SimpleITK their share of the CPUs (Dask workers start torch on one thread)."""
    import SimpleITK as sitk
    import torch

    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // max(_worker_threads(), 1))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    return threads


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return 1


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"in-process:{os.getpid()}"


def fuse_patient(task: PatientTask) -> dict:
    """Fuse one patient into ``out_root/output``; a result record whatever happens."""
    started = time.time()
    result = {"key": task.key, "worker": _worker_address(), "host": socket.gethostname(),
              "pid": os.getpid(), "started_unix": started}
    try:
        result["outputs"], result["timings_seconds"] = _fuse(task)
        result["status"] = "done"
    except MixfuseError as err:
        result.update(status="failed", error=str(err))
    except Exception as err:  # one patient's failure, whatever it is, must not stop the batch
        if is_out_of_memory(err):
            result.update(status="failed", error=out_of_memory_message(task.mri, task.memory_bytes))
        else:
            result.update(status="failed", error=f"{type(err).__name__}: {err}".strip(),
                          detail=traceback.format_exc(limit=-8))
    result["wall_seconds"] = round(time.time() - started, 3)
    result["model_loads_in_worker"] = _LOADS["count"]
    return result


def _fuse(task: PatientTask) -> tuple[dict[str, str], dict[str, float]]:
    from ..pipeline import fuse_study

    settings = task.settings
    result_threads = _configure_threads(settings.threads)
    check_memory(task.memory_bytes, task.mri)
    model = worker_model(settings.weights, settings.device)
    final = Path(task.out_root) / task.output
    with atomic_path(final, overwrite=True, folder=True) as folder:
        paths = fuse_study(task.mri, task.functional, folder, modality=task.modality,
                           formats=settings.formats, deidentify=settings.deidentify,
                           allow_raw_activity=settings.allow_raw_activity, model=model,
                           register=settings.register, device=settings.device, **settings.options)
        outputs = {key: (Path(task.output) / Path(path).relative_to(folder)).as_posix()
                   for key, path in paths.items()}
        report = json.loads(Path(paths["report_json"]).read_text())
        timings = report.get("timings_seconds", {})
        record = {"key": task.key, "checksums": task.checksums, "settings": settings.fingerprint(),
                  "outputs": outputs, "timings_seconds": timings, "threads": result_threads,
                  "finished_unix": time.time()}
        (folder / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")
    return outputs, timings


def read_record(folder: Path) -> dict | None:
    """The record a finished patient folder carries, or None (no folder, or not one of ours)."""
    try:
        return json.loads((folder / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None
