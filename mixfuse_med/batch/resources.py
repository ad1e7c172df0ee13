"""Memory: refuse a study that cannot fit before allocating it, and name the problem when it does not.

A huge volume must fail as a clear per-patient error, not as a worker the
operating system killed half-way (or one that dragged the machine into
swap).  The estimate comes from the headers alone (grid sizes), measured
on the full-size synthetic study (see benchmarks/README.md).
"""

from __future__ import annotations

from ..errors import ResourceError

# Peak memory of fuse_study beyond the loaded model, per MRI-grid voxel (the scaled, colour-mapped
# and fused copies, the registered functional volume, the export buffers) and per pixel of one
# network batch (window attention activations), plus per functional voxel (its load and resampling).
BYTES_PER_MRI_VOXEL = 60
BYTES_PER_FUNCTIONAL_VOXEL = 16
BYTES_PER_BATCH_PIXEL = 2_000
GIB = 1024 ** 3


def estimate_fusion_bytes(mri_shape: tuple[int, ...], functional_shape: tuple[int, ...],
                          batch_size: int = 8) -> int:
    """Peak bytes fusing one study is expected to need, from the two grid sizes."""
    mri_voxels = _product(mri_shape)
    slice_pixels = mri_voxels // max(min(mri_shape), 1)  # slices run along one axis: take the largest
    return (mri_voxels * BYTES_PER_MRI_VOXEL + _product(functional_shape) * BYTES_PER_FUNCTIONAL_VOXEL
            + slice_pixels * batch_size * BYTES_PER_BATCH_PIXEL)


def _product(shape: tuple[int, ...]) -> int:
    count = 1
    for n in shape:
        count *= max(int(n), 1)
    return count


def available_memory() -> int | None:
    """Bytes this process may still use: free memory, within a Dask worker's own limit; None if unknown."""
    free = _system_available()
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return free
    limit = getattr(getattr(worker, "memory_manager", None), "memory_limit", None)
    if not limit:
        return free
    room = int(limit) - _rss()
    return room if free is None else min(room, free)


def _system_available() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _rss() -> int:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def check_memory(need: int, what: str) -> None:
    """Raise ResourceError when ``need`` bytes clearly exceed what this process has left."""
    have = available_memory()
    if have is not None and need > have:
        where = "worker" if _in_worker() else "machine"
        raise ResourceError(f"{what}: out of memory: fusing it needs about {need / GIB:.1f} GiB, this "
                            f"{where} has {max(have, 0) / GIB:.1f} GiB free; use a machine or worker with "
                            "more memory, or fewer workers per machine")


def _in_worker() -> bool:
    try:
        from distributed import get_worker

        get_worker()
        return True
    except (ImportError, ValueError):
        return False


def is_out_of_memory(error: BaseException) -> bool:
    """True for the ways numpy, torch (CPU and CUDA) and SimpleITK say an allocation failed."""
    if isinstance(error, MemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(
        s in text for s in ("out of memory", "can't allocate memory", "cannot allocate memory",
                            "failed to allocate", "std::bad_alloc"))


def out_of_memory_message(what: str, need: int | None) -> str:
    estimate = f" (expected need about {need / GIB:.1f} GiB)" if need else ""
    return (f"{what}: out of memory while fusing{estimate}; use a machine or worker with more memory, "
            "or fewer workers per machine")
