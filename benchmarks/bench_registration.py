"""Rigid registration benchmark: target registration error and time, PET-like and SPECT-like.

Each case is a synthetic study (MNI152 MRI at 1 mm; PET 2 mm / 6 mm FWHM or
SPECT 4 mm / 12 mm FWHM) whose head moved by a seeded random rigid transform
(up to 10 degrees about a random axis, up to 15 mm; exactly that with
--at-maximum); --oblique tilts the MRI grid.  TRE = mean distance between brain points mapped by the found
and by the true transform.  Time = wall clock of one ``register_rigid`` call.

    python benchmarks/bench_registration.py --cases 10
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np
import SimpleITK as sitk


def tre(found: sitk.Transform, truth: sitk.Transform, points: np.ndarray) -> float:
    return float(np.mean([np.linalg.norm(np.subtract(found.TransformPoint(p), truth.TransformPoint(p)))
                          for p in points]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10, help="seeded transforms per modality (default 10)")
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--modalities", nargs="+", default=["PET", "SPECT"], choices=["PET", "SPECT"])
    parser.add_argument("--downsample", type=int, default=1, help="voxel size multiplier (1 = full size)")
    parser.add_argument("--at-maximum", action="store_true", help="every movement exactly 10 deg, 15 mm")
    parser.add_argument("--oblique", action="store_true", help="MRI on an oblique grid (up to 20 deg)")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                        help="register_rigid option, e.g. --option sampling_percentage=0.1")
    args = parser.parse_args(argv)

    from mixfuse_med.synthetic import brain_points, make_synthetic_volumes
    from mixfuse_med.transforms import register_rigid

    options = {}
    for item in args.option:
        name, value = item.split("=", 1)
        options[name] = eval(value, {}, {})  # numbers and tuples from the command line
    points = brain_points(2000, seed=0)
    print(f"# {platform.node()} cpus={os.cpu_count()} load={os.getloadavg()} sitk threads="
          f"{sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()} options={options or 'defaults'}")
    print(f"{'modality':8} {'seed':>5} {'rot deg':>7} {'shift mm':>8} {'TRE0 mm':>8} {'TRE mm':>7} {'s':>6}")
    summary = {}
    for modality in args.modalities:
        errors, seconds = [], []
        for seed in range(args.first_seed, args.first_seed + args.cases):
            case = make_synthetic_volumes(modality, seed=seed, downsample=args.downsample,
                                          oblique=args.oblique, motion_at_maximum=args.at_maximum)
            truth = case.true_transform
            rotation = np.rad2deg(np.arccos(np.clip((np.trace(np.reshape(truth.GetMatrix(), (3, 3))) - 1) / 2,
                                                    -1, 1)))
            start = time.perf_counter()
            found = register_rigid(case.mri, case.functional, **options)
            seconds.append(time.perf_counter() - start)
            errors.append(tre(found, truth, points))
            print(f"{modality:8} {seed:5d} {rotation:7.2f} {np.linalg.norm(truth.GetTranslation()):8.2f} "
                  f"{tre(sitk.Euler3DTransform(), truth, points):8.2f} {errors[-1]:7.3f} {seconds[-1]:6.2f}",
                  flush=True)
        summary[modality] = (statistics.median(errors), max(errors), statistics.median(seconds), max(seconds))
    print(f"# load after: {os.getloadavg()}")
    for modality, (med_tre, max_tre, med_s, max_s) in summary.items():
        print(f"{modality}: median TRE {med_tre:.3f} mm (max {max_tre:.3f}), "
              f"median {med_s:.2f} s per registration (max {max_s:.2f}) over {args.cases} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
