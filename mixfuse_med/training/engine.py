"""Pieces that fit MixFuse's unsupervised training into MONAI's engines.

MONAI's ``SupervisedTrainer`` calls ``network(inputs, *args)`` and
``loss(pred, targets)``.  MixFuse takes two images and its loss needs both
sources, so a batch is prepared as inputs = MRI, args = (functional,) and
targets = both sources stacked, and :class:`FusionCriterion` unstacks them.
The handlers here add what a long CPU run needs: a learning-rate schedule
that is a pure function of the iteration (so resuming or changing the rate
from the command line just works), a log of the loss terms, and a single
resumable checkpoint written atomically.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.metrics import Metric
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..atomic import atomic_path
from ..inference import read_state_dict
from ..losses import FusionLoss
from ..metrics import evaluate as fusion_metrics


def prepare_fusion_batch(batchdata: dict, device=None, non_blocking: bool = False, **kwargs):
    """(inputs, targets, args, kwargs) for MONAI engines: MRI in, functional as extra arg."""
    mri = batchdata["mri"].to(device=device, non_blocking=non_blocking, **kwargs)
    functional = batchdata["functional"].to(device=device, non_blocking=non_blocking, **kwargs)
    return mri, torch.cat([mri, functional], dim=1), (functional,), {}


class FusionCriterion(nn.Module):
    """``loss(pred, targets)`` with targets = cat([mri, functional], dim=1)."""

    def __init__(self, **loss_args) -> None:
        super().__init__()
        self.loss = FusionLoss(**loss_args)

    def forward(self, fused: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.loss(targets[:, :1], targets[:, 1:], fused)

    def terms(self, fused: torch.Tensor, targets: torch.Tensor):
        return self.loss.terms(targets[:, :1], targets[:, 1:], fused)


def learning_rate_at(iteration: int, base_lr: float, warmup: int = 0, decay_start: int | None = None,
                     decay_end: int | None = None, min_lr: float = 0.0) -> float:
    """Linear warm-up, constant, then cosine decay to ``min_lr`` between the decay bounds."""
    if warmup and iteration < warmup:
        return base_lr * (iteration + 1) / warmup
    if decay_start is None or decay_end is None or iteration < decay_start:
        return base_lr
    progress = min(1.0, (iteration - decay_start) / max(1, decay_end - decay_start))
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def parameter_groups(network: nn.Module, head_lr_scale: float = 1.0) -> list[dict]:
    """Optimiser groups: the transformer at the base rate, the reconstruction head scaled.

    The head ends in BatchNorm and tanh: black background needs its scale and
    shift to move far from their start (tanh(x) / 2 + 0.5 near 0 needs x near -3),
    which Adam at the transformer's rate takes thousands of steps to do.  A
    group's ``lr_scale`` is kept by :class:`LearningRateSchedule`.
    """
    head = [p for name, p in network.named_parameters() if name.startswith("head.")]
    rest = [p for name, p in network.named_parameters() if not name.startswith("head.")]
    groups = [{"params": rest, "lr_scale": 1.0}]
    if head:
        groups.append({"params": head, "lr_scale": float(head_lr_scale)})
    return groups


class LearningRateSchedule:
    """Sets the optimiser's rate before every iteration from :func:`learning_rate_at`.

    Each parameter group gets the scheduled rate times its ``lr_scale`` (default 1).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, warmup: int = 0,
                 decay_start: int | None = None, decay_end: int | None = None, min_lr: float = 0.0):
        self.optimizer = optimizer
        self.args = dict(base_lr=base_lr, warmup=warmup, decay_start=decay_start,
                         decay_end=decay_end, min_lr=min_lr)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        lr = learning_rate_at(engine.state.iteration - 1, **self.args)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)


class LossTermsLogger:
    """Appends mean loss terms every ``interval`` iterations to a JSON-lines file.

    The file is the record of a run (and the source of its loss curve); it is
    appended to on resume, never truncated.
    """

    def __init__(self, path: str | Path, interval: int = 25, criterion: FusionCriterion | None = None,
                 optimizer: torch.optim.Optimizer | None = None) -> None:
        self.path = Path(path)
        self.interval = interval
        self.criterion = criterion or FusionCriterion()
        self.optimizer = optimizer
        self._sums: list[list[float]] = []
        self._start = time.monotonic()
        self._offset = 0.0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        self._offset = self._logged_seconds()

    def _logged_seconds(self) -> float:
        """Wall time already logged by earlier runs of this log (resumed training)."""
        if not self.path.is_file():
            return 0.0
        lines = self.path.read_text().strip().splitlines()
        return float(json.loads(lines[-1]).get("seconds", 0.0)) if lines else 0.0

    @torch.no_grad()
    def __call__(self, engine: Engine) -> None:
        out = engine.state.output
        if isinstance(out, list):  # decollated output
            pred = torch.stack([o["pred"] for o in out])
            label = torch.stack([o["label"] for o in out])
        else:
            pred, label = out["pred"], out["label"]
        self._sums.append([float(t) for t in self.criterion.terms(pred.float(), label.float())])
        if engine.state.iteration % self.interval:
            return
        mean = np.mean(self._sums, axis=0).tolist()
        self._sums = []
        record = {"iteration": engine.state.iteration, "epoch": engine.state.epoch,
                  "seconds": round(self._offset + time.monotonic() - self._start, 1),
                  "loss": dict(zip(("total", "intensity", "gradient", "ssim"), mean, strict=True))}
        if self.optimizer is not None:
            record["lr"] = self.optimizer.param_groups[0]["lr"]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


class WeightAverage:
    """Exponential moving average of the weights, updated after every iteration.

    Why: at a learning rate that still makes progress on this CPU, single
    iterates swing (a grey veil over the black background comes and goes from
    one epoch to the next); their average does not.  Validation and the best
    checkpoint use :attr:`network`, the averaged copy; ``decay=0`` makes it
    follow the raw weights exactly.  Its state goes into the resumable
    checkpoint so a resumed run keeps the average it had.
    """

    def __init__(self, network: nn.Module, decay: float = 0.998) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"weight-average decay must be in [0, 1), got {decay}")
        self.source = network
        self.averaged = AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

    @property
    def network(self) -> nn.Module:
        return self.averaged.module

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        self.averaged.update_parameters(self.source)

    def state_dict(self) -> dict:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.averaged.load_state_dict(state)


class ResumableCheckpoint:
    """One checkpoint file a run resumes from: objects + engine state, every N iterations.

    On start, if ``path`` exists, the objects and the trainer's iteration and
    epoch are restored, so re-running the same command continues the run.
    Written atomically: a killed run leaves the previous checkpoint whole.
    """

    def __init__(self, path: str | Path, objects: dict, interval: int = 100) -> None:
        self.path = Path(path)
        self.objects = objects
        self.interval = interval

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self.save)
        engine.add_event_handler(Events.COMPLETED, self.save)

    def load(self, engine: Engine) -> None:
        if not self.path.is_file():
            return
        checkpoint = torch.load(self.path, map_location="cpu", weights_only=False)
        for name, obj in self.objects.items():
            if name in checkpoint:
                obj.load_state_dict(checkpoint[name])
        state = checkpoint.get("trainer", {})
        engine.state.iteration = int(state.get("iteration", 0))
        engine.state.epoch = int(state.get("epoch", 0))
        engine.logger.info(f"resumed from {self.path} at iteration {engine.state.iteration}")

    def save(self, engine: Engine) -> None:
        checkpoint = {name: obj.state_dict() for name, obj in self.objects.items()}
        checkpoint["trainer"] = {"iteration": engine.state.iteration, "epoch": engine.state.epoch}
        with atomic_path(self.path, overwrite=True) as tmp:
            torch.save(checkpoint, tmp)


class FusionMetrics(Metric):
    """Means of the fusion metrics (spec section 4) over validation images.

    Reads (pred, label) from the evaluator's output: fused images and the
    stacked sources.  ``compute`` returns a dict, which ignite stores metric
    by metric in ``engine.state.metrics``.
    """

    def __init__(self, output_transform=lambda out: (out["pred"], out["label"])) -> None:
        self._rows: list[dict] = []
        super().__init__(output_transform=output_transform)

    def reset(self) -> None:
        self._rows = []

    def update(self, output) -> None:
        fused, sources = (t.detach().float().cpu().numpy() for t in output)
        if fused.ndim == 3:  # one decollated item
            fused, sources = fused[None], sources[None]
        for f, s in zip(fused, sources, strict=True):
            self._rows.append(fusion_metrics(np.clip(s[0], 0, 1), np.clip(s[1], 0, 1),
                                             np.clip(f[0], 0, 1)))

    def compute(self) -> dict[str, float]:
        means = {}
        for name in self._rows[0] if self._rows else ():
            finite = [r[name] for r in self._rows if math.isfinite(r[name])]
            means[name] = float(np.mean(finite)) if finite else float("nan")
        return means


def initialise_network(network: nn.Module, weights: str | Path | None = None) -> nn.Module:
    """``network``, starting from ``weights`` (a state dict or checkpoint) when given.

    A run's own checkpoint, when it exists, still wins (ResumableCheckpoint
    loads it at start); this only sets where a new run begins.
    """
    if weights:
        network.load_state_dict(read_state_dict(weights))
    return network


def export_weights(checkpoint: str | Path, out: str | Path, *, overwrite: bool = False) -> Path:
    """Save the network state dict of a training checkpoint as a weights file."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    network = state.get("network", state)
    with atomic_path(out, overwrite=overwrite) as tmp:
        torch.save(network, tmp)
    return Path(out)
