"""Scoring fusion results beside the trivial baselines.

Fusion metrics reward contrast and detail even when it is noise, so a score
means little alone: every case is scored for MixFuse and for the pixel mean,
the pixel maximum and each source alone, and the summary counts the main
metrics on which MixFuse beats every baseline.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from .atomic import write_text_atomic
from .errors import OutputExistsError
from .metrics import ALL_METRICS, MAIN_METRICS, baseline_fusions, evaluate
from .training.data import PairRecord

FUSION_METHOD = "mixfuse"
BASELINES = ("mean", "max", "mri", "functional")


def score_case(name: str, mri: np.ndarray, functional: np.ndarray, fused: np.ndarray) -> list[dict]:
    """Metric rows for one case: the fused result and each trivial baseline.

    ``functional`` and ``fused`` may be colour (H, W, 3); metrics reduce them
    to grey (spec section 4).  Images are in [0, 1] or uint8.
    """
    candidates = {FUSION_METHOD: fused, **baseline_fusions(mri, functional)}
    return [{"case": name, "method": method, **evaluate(mri, functional, image)}
            for method, image in candidates.items()]


def score_pairs(pairs: Sequence[PairRecord],
                fuse: Callable[[PairRecord, np.ndarray, np.ndarray], np.ndarray],
                progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Score every 2D pair; ``fuse(pair, mri, functional_rgb)`` gives its fused image."""
    from .io.png import read_grey, read_rgb

    rows: list[dict] = []
    for i, pair in enumerate(pairs):
        mri, rgb = read_grey(pair.mri), read_rgb(pair.functional)
        rows += score_case(pair.name, mri, rgb, fuse(pair, mri, rgb))
        if progress is not None:
            progress(i + 1, len(pairs))
    return rows


def evaluate_pairs(pairs: Sequence[PairRecord], out_dir: str | Path, *, model=None,
                   fused_dir: str | Path | None = None, overwrite: bool = False,
                   progress: Callable[[int, int], None] | None = None) -> dict:
    """Fuse (or read from ``fused_dir``) and score 2D pairs; write the reports.

    Returns {"summary": ..., "paths": {...}}.  ``model`` defaults to the
    shipped weights; a fused image in ``fused_dir`` is named like its
    functional source.
    """
    from .inference import fuse_2d, load_pretrained
    from .io.png import read_rgb

    if fused_dir is not None:
        fused_dir = Path(fused_dir)

        def fuse(pair, mri, rgb):
            return read_rgb(fused_dir / pair.functional.name)
    else:
        model = model if model is not None else load_pretrained()

        def fuse(pair, mri, rgb):
            return fuse_2d(mri, rgb, model)

    rows = score_pairs(pairs, fuse, progress)
    paths = write_report(rows, out_dir, overwrite=overwrite)
    return {"summary": summarize(rows), "paths": paths}


def score_volumes(name: str, study, min_tissue: float = 0.05) -> list[dict]:
    """Rows for one fused volume: metrics per slice with tissue, averaged over slices.

    Slices run along the axis the volume was fused along; a slice counts when
    at least ``min_tissue`` of it shows tissue in either source.  The sources
    are the network's inputs (scaled MRI, colour-mapped functional volume).
    """
    axis = study.notes.get("slice_axis", 2)
    mri = np.moveaxis(study.mri_scaled[0].numpy(), axis, 0)
    rgb = np.moveaxis(study.functional_rgb.numpy().transpose(1, 2, 3, 0), axis, 0)
    fused = np.moveaxis(study.fused_rgb.numpy().transpose(1, 2, 3, 0), axis, 0)
    per_slice: dict[str, list[dict]] = {}
    for a, b, f in zip(mri, rgb, fused, strict=True):
        if max((a > 0.05).mean(), (b.max(-1) > 0.05).mean()) < min_tissue:
            continue
        for row in score_case(name, a, b, f):
            per_slice.setdefault(row["method"], []).append(row)
    return [{"case": name, "method": method, "slices": len(rows),
             **{m: _finite_mean([r[m] for r in rows]) for m in ALL_METRICS}}
            for method, rows in per_slice.items()]


def evaluate_datalist(datalist: Sequence[dict], out_dir: str | Path, *, model=None,
                      overwrite: bool = False, progress: Callable[[int, int], None] | None = None,
                      **options) -> dict:
    """Fuse volume pairs ({"mri", "functional"[, "modality", "name"]}) and score them slice-wise.

    Nothing but the reports is written.  ``options`` go to
    :func:`mixfuse_med.pipeline.fuse_volumes`.
    """
    from .pipeline import fuse_volumes, load_study

    rows: list[dict] = []
    for i, item in enumerate(datalist):
        modality = item.get("modality", "PET")
        mri, functional = load_study(item["mri"], item["functional"], modality)
        study = fuse_volumes(mri, functional, modality=modality, model=model, **options)
        rows += score_volumes(item.get("name") or Path(item["mri"]).name.split(".")[0], study)
        if progress is not None:
            progress(i + 1, len(datalist))
    paths = write_report(rows, out_dir, overwrite=overwrite)
    return {"summary": summarize(rows), "paths": paths}


def summarize(rows: Iterable[dict]) -> dict:
    """Mean of each metric per method, and where MixFuse beats every baseline."""
    rows = list(rows)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    means: dict[str, dict[str, float]] = {}
    for method in methods:
        chosen = [r for r in rows if r["method"] == method]
        means[method] = {m: _finite_mean([r[m] for r in chosen]) for m in ALL_METRICS}
    summary = {"cases": len({r["case"] for r in rows}), "mean": means}
    if FUSION_METHOD in means:
        others = [m for m in methods if m != FUSION_METHOD]
        wins = [metric for metric in MAIN_METRICS
                if all(means[FUSION_METHOD][metric] > means[o][metric] for o in others)]
        summary["beats_every_baseline_on"] = wins
        summary["main_metrics_won"] = f"{len(wins)}/{len(MAIN_METRICS)}"
    return summary


def _finite_mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def write_report(rows: list[dict], out_dir: str | Path, *, overwrite: bool = False) -> dict[str, Path]:
    """per_case.csv, summary.csv and summary.json in ``out_dir``, written atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in ("per_case.csv", "summary.csv", "summary.json")}
    if not overwrite:
        for path in paths.values():
            if path.exists():
                raise OutputExistsError(path)  # before writing any of the three
    summary = summarize(rows)
    fields = ["case", "method", *ALL_METRICS]
    write_text_atomic(paths["per_case.csv"], _csv_text(rows, fields), overwrite=overwrite)
    mean_rows = [{"method": method, **values} for method, values in summary["mean"].items()]
    write_text_atomic(paths["summary.csv"], _csv_text(mean_rows, ["method", *ALL_METRICS]),
                      overwrite=overwrite)
    write_text_atomic(paths["summary.json"], json.dumps(summary, indent=2) + "\n", overwrite=overwrite)
    return {"per_case_csv": paths["per_case.csv"], "summary_csv": paths["summary.csv"],
            "summary_json": paths["summary.json"]}


def _csv_text(rows: list[dict], fields: list[str]) -> str:
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


def format_summary(summary: dict, metrics: Sequence[str] = MAIN_METRICS) -> str:
    """A plain-text table of the mean metrics per method."""
    header = f"{'method':<12}" + "".join(f"{m:>9}" for m in metrics)
    lines = [header]
    for method, values in summary["mean"].items():
        lines.append(f"{method:<12}" + "".join(f"{values[m]:>9.4g}" for m in metrics))
    if "main_metrics_won" in summary:
        lines.append(f"MixFuse beats every baseline on {summary['main_metrics_won']} main metrics: "
                     + ", ".join(summary["beats_every_baseline_on"]))
    return "\n".join(lines)
