"""One progress fraction for the whole fusion job, and cancelling it from the GUI.

``mixfuse_med.pipeline.fuse_volumes`` reports ``(stage, fraction of the
stage)`` and stops when the callback raises; :class:`StageProgress` turns
that into a single fraction for a progress bar and raises
:class:`FusionCancelled` once the user asked to stop.
"""

from __future__ import annotations

from collections.abc import Callable

# rough share of the run time of each stage (CPU, default weights)
STAGE_WEIGHTS = {"register": 0.3, "resample": 0.05, "normalise": 0.1, "fuse": 0.55}


class FusionCancelled(Exception):
    """The user cancelled the fusion run."""


class StageProgress:
    """``progress(stage, fraction)`` for ``fuse_volumes``: reports overall progress, raises when cancelled."""

    def __init__(self, register: bool, report: Callable[[str, float], None],
                 cancelled: Callable[[], bool] = lambda: False) -> None:
        stages = [s for s in STAGE_WEIGHTS if register or s != "register"]
        total = sum(STAGE_WEIGHTS[s] for s in stages)
        self._start, self._share, done = {}, {}, 0.0
        for stage in stages:
            self._start[stage], self._share[stage] = done / total, STAGE_WEIGHTS[stage] / total
            done += STAGE_WEIGHTS[stage]
        self._report, self._cancelled = report, cancelled

    def overall(self, stage: str, fraction: float) -> float:
        """Fraction of the whole job done when ``stage`` is ``fraction`` done."""
        if stage not in self._start:
            return 0.0 if stage == "load" else 1.0
        return self._start[stage] + self._share[stage] * min(max(float(fraction), 0.0), 1.0)

    def __call__(self, stage: str, fraction: float) -> None:
        if self._cancelled():
            raise FusionCancelled(f"fusion cancelled during {stage}")
        self._report(stage, self.overall(stage, fraction))
