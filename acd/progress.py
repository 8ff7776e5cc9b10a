"""Progress reporting for flows: one Prefect progress artifact per stage, throttled.

Kept out of the engine (which takes a plain callback) so engine code never imports Prefect.
"""
from __future__ import annotations

import time


class PrefectStageProgress:
    def __init__(self, flow_key: str, min_interval_s: float = 2.0):
        self.flow_key = flow_key
        self.min_interval_s = min_interval_s
        self._ids: dict[str, object] = {}
        self._last: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        pct = 100.0 * done / total if total else 100.0
        now = time.monotonic()
        if stage not in self._ids:
            self._ids[stage] = create_progress_artifact(
                progress=pct, key=f"{self.flow_key}-{stage}", description=f"{stage}: {done}/{total}"
            )
            self._last[stage] = now
            return
        # Throttle: the API server stores every update; per-lot updates at 300k scale would be thousands.
        if done < total and now - self._last[stage] < self.min_interval_s:
            return
        update_progress_artifact(artifact_id=self._ids[stage], progress=pct, description=f"{stage}: {done}/{total}")
        self._last[stage] = now
