"""The one stopwatch: wall time per phase of a dub (``InferenceResult.timings``), per stage of the demo
(``report.json``'s ``stage_minutes``), and of one job in the app."""

from __future__ import annotations

import time


class Stopwatch:
    """Wall seconds since the start, and per lap: ``lap(name)`` closes the phase that ran since the last
    lap (or the start). ``time.perf_counter``: monotonic, so a clock change never gives a negative lap."""

    def __init__(self) -> None:
        self._start = self._last = time.perf_counter()
        self.laps: dict[str, float] = {}  # phase name -> seconds, in the order the phases ran

    def lap(self, name: str) -> float:
        """Close the phase ``name``; returns its seconds."""
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now
        return self.laps[name]

    @property
    def total(self) -> float:
        """Seconds since the start."""
        return time.perf_counter() - self._start

    def minutes(self, digits: int = 2) -> dict[str, float]:
        """The laps so far in minutes, rounded to ``digits``."""
        return {name: round(seconds / 60, digits) for name, seconds in self.laps.items()}
