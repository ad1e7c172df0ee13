"""Where the patients run: a Dask cluster (local or given), or this process.

A ``LocalCluster`` (one process per worker) and an existing scheduler
(``--scheduler tcp://host:port``) take the same path: a ``Client``, one
``submit`` per patient, results taken as they complete.  When the cluster's
workers advertise a GPU (``dask worker --resources GPU=1``), patients are
given only to them (``resources={"GPU": 1}``).  Dask is imported here only,
and only when used, so the core install runs without it.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager

from ..errors import MixfuseError
from .task import PatientTask, fuse_patient

OnResult = Callable[[dict], None]
INSTALL_HINT = 'pip install "mixfuse-med[cluster]"'


def dask_available() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


class InProcessExecutor(AbstractContextManager):
    """Patients one after another in this process (``--workers 0``, or Dask not installed)."""

    description = "in this process, one patient at a time"
    threads: int | None = None

    def run(self, tasks: Iterable[PatientTask], on_result: OnResult) -> None:
        for task in tasks:
            on_result(fuse_patient(task))

    def __exit__(self, *exc) -> None:
        return None


class DaskExecutor(AbstractContextManager):
    """A Dask client on a new LocalCluster, or on the scheduler at ``scheduler``."""

    def __init__(self, scheduler: str | None = None, workers: int | None = None,
                 threads_per_worker: int | None = None, wait_seconds: float = 60.0) -> None:
        if not dask_available():
            raise MixfuseError(f"Dask is not installed: {INSTALL_HINT}")
        self.scheduler = scheduler
        self.workers = workers
        self.threads_per_worker = threads_per_worker
        self.wait_seconds = wait_seconds
        self.cluster = None
        self.client = None
        self.threads: int | None = None  # torch threads per worker (None: each worker decides)

    def __enter__(self) -> DaskExecutor:
        import dask
        from distributed import Client, LocalCluster

        if self.scheduler:
            try:
                self.client = Client(self.scheduler, timeout=self.wait_seconds)
            except OSError as err:
                raise MixfuseError(f"cannot reach the Dask scheduler at {self.scheduler} ({err})") from None
            self.threads = self.threads_per_worker
        else:
            workers = self.workers or default_workers()
            self.threads = self.threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
            with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
                # one worker process per patient at a time; its threads go to torch and SimpleITK
                self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                            dashboard_address=None, silence_logs=logging.ERROR,
                                            resources={"GPU": 1} if _local_gpu() else None)
            self.client = Client(self.cluster)
        try:
            self.client.wait_for_workers(1, timeout=self.wait_seconds)
        except TimeoutError:
            self.__exit__(None, None, None)
            raise MixfuseError(f"no Dask worker joined the scheduler at {self.scheduler} within "
                               f"{self.wait_seconds:.0f} s (start one: dask worker {self.scheduler})") \
                from None
        return self

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    @property
    def description(self) -> str:
        info = self.client.scheduler_info()
        workers = info.get("workers", {})
        where = f"the Dask scheduler at {self.scheduler}" if self.scheduler else "a local Dask cluster"
        gpu = sum(1 for w in workers.values() if w.get("resources", {}).get("GPU"))
        return f"{where}: {len(workers)} worker(s)" + (f", {gpu} with a GPU" if gpu else "")

    def gpu_resources(self) -> dict | None:
        """{"GPU": 1} when some worker advertises a GPU, so the fusion goes to those workers only."""
        workers = self.client.scheduler_info().get("workers", {})
        return {"GPU": 1} if any(w.get("resources", {}).get("GPU") for w in workers.values()) else None

    def run(self, tasks: Iterable[PatientTask], on_result: OnResult) -> None:
        from distributed import as_completed

        resources = self.gpu_resources()
        futures = {}
        for task in tasks:
            future = self.client.submit(fuse_patient, task, pure=False, resources=resources,
                                        key=f"mixfuse-{task.output}-{uuid.uuid4().hex[:8]}")
            futures[future] = task
        for future in as_completed(futures):
            task = futures.pop(future)
            try:
                result = future.result()
            except Exception as err:  # the worker died (out of memory, killed) or the task was lost
                result = lost_task_result(task, err)
            future.release()
            on_result(result)


def lost_task_result(task: PatientTask, error: BaseException) -> dict:
    from .resources import GIB

    name = type(error).__name__
    why = (f"the worker fusing this patient died ({name}); the usual cause is running out of memory "
           f"(expected need about {task.memory_bytes / GIB:.1f} GiB)") if name == "KilledWorker" else \
        f"the cluster lost this patient's task ({name}: {error})"
    return {"key": task.key, "status": "failed", "error": f"{task.mri}: {why}"}


def default_workers() -> int:
    """One worker per two CPUs (the network and registration use two threads well), at least one."""
    return max(1, (os.cpu_count() or 1) // 2)


def _local_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def make_executor(scheduler: str | None, workers: int | None, threads_per_worker: int | None,
                  warn: Callable[[str], None]):
    """The executor the options ask for; without Dask, this process (with a word saying so)."""
    if workers == 0 and not scheduler:
        executor = InProcessExecutor()
        executor.threads = threads_per_worker
        return executor
    if not dask_available():
        if scheduler:
            raise MixfuseError(f"--scheduler needs Dask, which is not installed: {INSTALL_HINT}")
        warn(f"Dask is not installed: fusing the patients one at a time in this process "
             f"({INSTALL_HINT} for parallel workers)")
        executor = InProcessExecutor()
        executor.threads = threads_per_worker
        return executor
    return DaskExecutor(scheduler, workers, threads_per_worker)
