"""Forward speed and memory of the default MixFuse on 256x256 pairs.

Measures, in one run and on the same machine, ms per slice at batch 1 and 16
for three implementations of the same network (same weights, same output):

- fast:    window-ordered tokens + fused SDPA attention (what mixfuse-med runs)
- plain:   the same token layout, attention as matmul-softmax per window
- literal: the authors' structure (roll, window partition and reverse in every
           block, per-window matmul-softmax), tests/swin_reference.py

and prints the speed ratios.  Each measurement runs in a fresh process so its
peak resident memory (VmHWM) is its own.  Also times one training step
(forward + backward, 96 px crops, batch 4) fast vs plain.

    python benchmarks/bench_network.py [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(kind: str, batch: int, size: int, repeats: int, threads: int, train: bool) -> dict:
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from mixfuse_med.networks import MixFuse

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = MixFuse()
    model.attention = "matmul" if kind == "plain" else "sdpa"
    mri, pet = torch.rand(batch, 1, size, size), torch.rand(batch, 1, size, size)
    if kind == "literal":
        from swin_reference import reference_forward

        def forward():
            return reference_forward(model, mri, pet)
    else:
        def forward():
            return model(mri, pet)

    if train:
        model.train()
        opt = torch.optim.Adam(model.parameters(), 1e-4)

        def step():
            out = forward()
            loss = (out - torch.maximum(mri, pet)).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    else:
        model.eval()

        def step():
            with torch.no_grad():
                forward()

    step()  # warm-up: caches, allocator
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    best = min(times)
    return {
        "kind": kind, "batch": batch, "size": size, "train": train,
        "seconds": best, "ms_per_slice": 1000 * best / batch, "peak_rss_mb": peak_rss_mb(),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def run_child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--kinds", default="fast,plain,literal")
    parser.add_argument("--batches", default="1,16", help="forward batch sizes (default 1,16)")
    parser.add_argument("--child", nargs=5, metavar=("KIND", "BATCH", "SIZE", "REPEATS", "TRAIN"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, batch, size, repeats, train = args.child
        print(json.dumps(measure(kind, int(batch), int(size), int(repeats), args.threads, train == "1")))
        return

    kinds = args.kinds.split(",")
    rows = []
    batches = [int(b) for b in args.batches.split(",")]
    for batch in batches:
        for kind in kinds:
            repeats = args.repeats if batch == 1 else 1
            row = run_child([kind, str(batch), str(args.size), str(repeats), "0"])
            rows.append(row)
            print(f"forward {kind:8s} batch {batch:2d}: {row['ms_per_slice']:8.1f} ms/slice   "
                  f"peak RSS {row['peak_rss_mb']:7.0f} MB", flush=True)
    train_rows = {}
    for kind in ("fast", "plain"):
        if kind in kinds:
            train_rows[kind] = run_child([kind, "4", "96", str(args.repeats), "1"])
            print(f"train step {kind:5s} (4 x 96 px): {train_rows[kind]['seconds']:6.2f} s   "
                  f"peak RSS {train_rows[kind]['peak_rss_mb']:7.0f} MB", flush=True)

    print(f"\nparameters: {rows[0]['parameters']:,}   threads: {args.threads}   "
          f"size: {args.size}x{args.size}")
    by = {(r["kind"], r["batch"]): r for r in rows}
    for batch in batches:
        for other in ("plain", "literal"):
            if ("fast", batch) in by and (other, batch) in by:
                ratio = by[(other, batch)]["ms_per_slice"] / by[("fast", batch)]["ms_per_slice"]
                print(f"speed-up fast vs {other:7s} at batch {batch:2d}: {ratio:5.2f}x")
    if len(train_rows) == 2:
        print(f"speed-up fast vs plain, training step: "
              f"{train_rows['plain']['seconds'] / train_rows['fast']['seconds']:5.2f}x")


if __name__ == "__main__":
    main()
