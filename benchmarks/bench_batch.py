"""Batch throughput: a synthetic cohort through ``mixfuse batch`` on a LocalCluster of 1 and 2 workers,
and where the time goes (load, register, resample, normalise, fuse, export) for one full-size study.

Patients per minute count the whole run (cluster start, discovery, checksums, fusion, manifest): what a
user waits for.  The per-stage split comes from the ``fusion_report.json`` timings ``fuse_study`` records.

    python benchmarks/bench_batch.py                    # 8 patients at downsample 3, workers 1 and 2
    python benchmarks/bench_batch.py --patients 4 --no-full-size
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def build_cohort(root: Path, patients: int, downsample: int) -> None:
    """One folder per patient holding its DICOM series (PET and SPECT in turn), as a PACS export would."""
    from mixfuse_med.synthetic import make_synthetic_study

    for i in range(patients):
        modality = "PET" if i % 2 == 0 else "SPECT"
        make_synthetic_study(root / f"patient{i:02d}", modality=modality, seed=100 + i, downsample=downsample,
                             formats=("dicom",))


def run_cohort(root: Path, out: Path, workers: int, weights: str | None) -> dict:
    from mixfuse_med.batch import BatchSettings, Manifest, run_batch
    from mixfuse_med.batch.checksums import file_sha256
    from mixfuse_med.inference import DEFAULT_WEIGHTS

    settings = BatchSettings(weights=weights, weights_sha256=file_sha256(weights or DEFAULT_WEIGHTS))
    start = time.perf_counter()
    report = run_batch(root, out, settings, workers=workers, show_progress=False, say=lambda text: None)
    seconds = time.perf_counter() - start
    if report.failed:
        raise SystemExit(f"patients failed: {report.failed}")
    entries = Manifest.load(out).patients.values()
    return {"workers": workers, "patients": len(report.done), "seconds": seconds,
            "patients_per_minute": 60.0 * len(report.done) / seconds,
            "mean_patient_seconds": sum(e["wall_seconds"] for e in entries) / len(report.done),
            "threads_per_worker": max(1, (os.cpu_count() or 1) // workers)}


def full_size_split(work: Path, weights: str | None) -> dict:
    """Stage timings of fuse_study on the full 1 mm synthetic PET study, from DICOM."""
    from mixfuse_med import fuse_study
    from mixfuse_med.synthetic import make_synthetic_study

    study = make_synthetic_study(work / "full", "PET", seed=7, downsample=1, formats=("dicom",))
    model = None
    if weights:
        from mixfuse_med.inference import load_pretrained

        model = load_pretrained(weights=weights)
    start, cpu = time.perf_counter(), time.process_time()
    paths = fuse_study(study.mri_dicom, study.functional_dicom, work / "full_out", modality="PET",
                       model=model)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    report = json.loads(Path(paths["report_json"]).read_text())
    return {"wall_seconds": wall, "cpu_seconds": cpu, "timings": report["timings_seconds"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=8)
    parser.add_argument("--downsample", type=int, default=3, help="cohort voxel size multiplier (default 3)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--weights", help="checkpoint (default: the shipped weights)")
    parser.add_argument("--no-full-size", action="store_true", help="skip the full-size stage split")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)

    import torch

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_batch_"))
    print(f"# {platform.node()} cpus={os.cpu_count()} load={os.getloadavg()} torch={torch.__version__} "
          f"work={work}", flush=True)
    root = work / "cohort"
    build_cohort(root, args.patients, args.downsample)
    print(f"cohort: {args.patients} patients (DICOM, PET and SPECT in turn), downsample {args.downsample}",
          flush=True)
    results = []
    for workers in args.workers:
        result = run_cohort(root, work / f"out_{workers}w", workers, args.weights)
        results.append(result)
        print(f"{workers} worker(s) x {result['threads_per_worker']} thread(s): {result['patients']} "
              f"patients in {result['seconds']:.1f} s = {result['patients_per_minute']:.2f} patients/min "
              f"(mean {result['mean_patient_seconds']:.1f} s per patient on its worker) "
              f"load={os.getloadavg()}", flush=True)
    if len(results) >= 2:
        base = results[0]
        for result in results[1:]:
            print(f"speed-up {result['workers']} vs {base['workers']} worker(s): "
                  f"{result['patients_per_minute'] / base['patients_per_minute']:.2f}x", flush=True)
    if not args.no_full_size:
        split = full_size_split(work, args.weights)
        total = sum(split["timings"].values())
        print(f"full-size study (MRI 197 x 233 x 189, PET from DICOM), fuse_study "
              f"{split['wall_seconds']:.1f} s wall, {split['cpu_seconds']:.1f} s CPU (all threads):")
        for stage, seconds in split["timings"].items():
            print(f"  {stage:<10} {seconds:8.1f} s  {100 * seconds / total:5.1f} %")
    print(f"# load after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
