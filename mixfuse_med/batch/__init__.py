"""Many patients at once: folder discovery, a resumable run manifest, execution on Dask.

``mixfuse batch ROOT --out DIR`` is :func:`run_batch`.  The pieces are
separate modules: :mod:`.discovery` (which files are whose MRI and PET/SPECT),
:mod:`.naming` (safe output folder names), :mod:`.checksums` and
:mod:`.manifest` (what is done), :mod:`.task` (one patient on a worker),
:mod:`.execution` (Dask or this process) and :mod:`.runner` (a whole run).
Dask is imported only when a cluster is used.
"""

from .discovery import PatientCase, ScanInput, discover_patients, inspect_patient
from .manifest import MANIFEST_NAME, Manifest
from .naming import assign_names, safe_name
from .runner import BatchReport, run_batch
from .task import BatchSettings, PatientTask, fuse_patient

__all__ = [
    "MANIFEST_NAME",
    "BatchReport",
    "BatchSettings",
    "Manifest",
    "PatientCase",
    "PatientTask",
    "ScanInput",
    "assign_names",
    "discover_patients",
    "fuse_patient",
    "inspect_patient",
    "run_batch",
    "safe_name",
]
