"""A small native kernel for the training backward of window attention, built on first use.

MixFuse's attention is thousands of 64-token windows with head dimension 2.
PyTorch's fused CPU kernels handle the forward well, but the backward with a
learnable bias runs as many tiny matrix products with the scores spilled to
memory.  ``kernels/window_attention_backward.c`` does one window-head at a
time in cache.  It is plain C (no PyTorch headers, no OpenMP runtime), so it
builds in about a second with the system C compiler; it is cached per source,
compiler and CPU under ``$MIXFUSE_CACHE`` (default ``~/.cache/mixfuse-med``).
Where no compiler works, or ``MIXFUSE_NATIVE=0``, callers fall back to the
PyTorch implementation: same results, slower.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

SOURCE = Path(__file__).parent / "kernels" / "window_attention_backward.c"
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd", "-shared", "-fPIC")
MAX_TOKENS = 256  # MAX_N in the C source

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_failed = False
_pool: ThreadPoolExecutor | None = None


def _cache_dir() -> Path:
    return Path(os.environ.get("MIXFUSE_CACHE", Path.home() / ".cache" / "mixfuse-med")) / "kernels"


def _cpu_signature() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return os.uname().machine


def _build(compiler: str) -> Path:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    key = hashlib.sha256(
        "\0".join([SOURCE.read_text(), version, _cpu_signature(), *FLAGS]).encode()).hexdigest()[:16]
    target = _cache_dir() / f"window_attention_backward-{key}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", str(built), "-lm"], check=True,
                       capture_output=True, text=True, timeout=120)
        os.replace(built, target)
    return target


def _load() -> ctypes.CDLL | None:
    global _library, _failed
    if _library is not None or _failed:
        return _library
    with _lock:
        if _library is not None or _failed:
            return _library
        if os.environ.get("MIXFUSE_NATIVE", "1") == "0":
            _failed = True
            return None
        compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        try:
            if compiler is None:
                raise FileNotFoundError("no C compiler (cc/gcc) on PATH")
            library = ctypes.CDLL(str(_build(compiler)))
            fn = library.window_attention_backward
            fn.restype = None
            fn.argtypes = [ctypes.c_void_p] * 7 + [ctypes.c_float] + [ctypes.c_int64] * 3 + \
                [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 2
            _library = library
        except (OSError, subprocess.SubprocessError) as err:
            detail = getattr(err, "stderr", "") or err
            _log.warning("mixfuse-med: native attention backward unavailable (%s); using PyTorch", detail)
            _failed = True
    return _library


def available() -> bool:
    return _load() is not None


def supports(q: torch.Tensor) -> bool:
    """Whether the native kernel can take this problem (CPU float32, head dim 2)."""
    return (q.device.type == "cpu" and q.dtype == torch.float32 and q.shape[-1] == 2
            and q.shape[-2] <= MAX_TOKENS and available())


def _threads() -> int:
    return max(1, torch.get_num_threads())


def window_attention_backward(q, k, v, grad_out, out, lse, mask):
    """(dq, dk, dv, dmask) for softmax(q k^T / sqrt(2) + mask) v; see the C source.

    q, k, v, grad_out, out: (M, G, N, 2); lse: (M, G, N); mask: (1, G, N, N).
    """
    global _pool
    library = _load()
    windows, groups, n, d = q.shape
    q, k, v, grad_out, out = (t.contiguous() for t in (q, k, v, grad_out, out))
    lse = lse.contiguous().float()
    mask = mask.reshape(groups, n, n).contiguous()
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    dmask = torch.empty(groups, n, n, dtype=torch.float32)
    scale = float(d) ** -0.5
    args = [t.data_ptr() for t in (q, k, v, grad_out, out, lse, mask)]

    def run(g0: int, g1: int) -> None:
        library.window_attention_backward(*args, scale, windows, groups, n, dq.data_ptr(),
                                          dk.data_ptr(), dv.data_ptr(), dmask.data_ptr(), g0, g1)

    threads = min(_threads(), groups)
    if threads == 1:
        run(0, groups)
    else:
        if _pool is None or _pool._max_workers < threads:
            _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mixfuse-attn")
        bounds = [round(i * groups / threads) for i in range(threads + 1)]
        for future in [_pool.submit(run, bounds[i], bounds[i + 1]) for i in range(threads)]:
            future.result()
    return dq, dk, dv, dmask.view(1, groups, n, n)
