"""The one Pearson correlation and the one stopwatch, in closed form."""

from __future__ import annotations

import time

import numpy as np
import pytest

from lipsync.clock import Stopwatch
from lipsync.stats import pearson


def test_pearson_closed_form() -> None:
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([1, 2, 1, 2], [1, 1, 2, 2]) == pytest.approx(0.0)
    assert pearson([0.5, 0.5, 0.5], [1, 2, 3]) == 0.0  # a still mouth has no timing
    assert pearson([1.0], [2.0]) == pearson(np.array([]), np.array([])) == 0.0  # too short to have one
    with pytest.raises(ValueError, match="equal length"):
        pearson([1, 2], [1, 2, 3])


def test_stopwatch_laps_add_up_to_the_total() -> None:
    clock = Stopwatch()
    time.sleep(0.02)
    first = clock.lap("first")
    clock.lap("second")
    assert list(clock.laps) == ["first", "second"] and first >= 0.02
    assert sum(clock.laps.values()) <= clock.total
    assert clock.minutes() == {"first": round(first / 60, 2), "second": round(clock.laps["second"] / 60, 2)}
