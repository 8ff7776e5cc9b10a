"""Progress reporting for flows: one Prefect progress artifact per stage, throttled.

Kept out of the engine (which takes a plain callback `progress(stage, done, total)`) so engine code never
imports Prefect. Artifact keys are `<flow_key>-<stage>` (lowercase, dashes), e.g. build-acd-demo-generate,
and the artifacts are linked to the flow run that creates them.
"""
from __future__ import annotations

import logging
import re
import time

log = logging.getLogger(__name__)


def artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow only lowercase letters, digits and dashes."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", "-".join(parts).lower())).strip("-")


class PrefectStageProgress:
    """progress(stage, done, total) -> create/update the stage's progress artifact.

    The first call for a stage creates the artifact; later calls update it at most every `min_interval_s`
    (the API stores every update: per-lot updates at 300k scale would be thousands), except the final
    one (done == total), which is always written. A failing API call is logged, never raised: progress
    must not fail a build.
    """

    def __init__(self, flow_key: str, min_interval_s: float = 2.0):
        self.flow_key = flow_key
        self.min_interval_s = min_interval_s
        self._ids: dict[str, object] = {}
        self._last: dict[str, float] = {}
        self._pct: dict[str, float] = {}
        self.writes = 0  # API calls made (for tests of the throttle)

    def key(self, stage: str) -> str:
        return artifact_key(self.flow_key, stage)

    def start(self, stage: str, total: int) -> None:
        """Show a stage at 0% before its first unit finishes."""
        self(stage, 0, total)

    def __call__(self, stage: str, done: int, total: int) -> None:
        from prefect.artifacts import create_progress_artifact, update_progress_artifact

        pct = round(100.0 * done / total, 2) if total else 100.0
        desc = f"{stage}: {done}/{total}"
        now = time.monotonic()
        try:
            if stage not in self._ids:
                self._ids[stage] = create_progress_artifact(progress=pct, key=self.key(stage), description=desc)
            else:
                final = done >= total
                if self._pct.get(stage) == pct or (not final and now - self._last[stage] < self.min_interval_s):
                    return
                update_progress_artifact(artifact_id=self._ids[stage], progress=pct, description=desc)
            self.writes += 1
            self._last[stage] = now
            self._pct[stage] = pct
        except Exception as exc:  # noqa: BLE001 - progress is best effort
            log.warning("progress artifact for %s not written: %s", stage, exc)
