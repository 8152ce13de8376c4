"""Named speed presets: which solver, how many steps, where guidance runs, how much segments overlap.

``paper`` is SayAnything's Appendix B (15 Euler steps on Karras sigmas, CFG at every step, 16-frame segments
sharing 4 frames). ``fast`` is the cheapest point of ``benchmarks/bench_sampling.py``'s sweep whose held-out
sync stayed within the measured noise of ``paper`` on the demo model (``bench_results/sampling_demo.md``): 109
instead of 477 full-size TFLOP per output second (155 instead of 531 with the VAE and Whisper). In that sweep
DPM-Solver++(2M) at 6 and 8 steps and Heun at 5 lost 0.05-0.08 of sync against Euler at the same step count,
so the fast preset stays with Euler.

``student`` is for a distilled student (``experiment=distill``, :mod:`lipsync.training.distill`): 2 passes of
multistep consistency sampling at the noise levels its folder records (``num_steps=1``: one pass), with the
teacher's guidance folded into the student, so its recorded guidance scale is 1 and no pass is unconditional.
A model that is not a student refuses it (:func:`lipsync.infer.options.student_levels`).

A preset only fills the options a caller left unset (None): ``preset=fast, num_steps=10`` is the fast
preset with 10 steps.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from lipsync.sampling.samplers import get_sampler

PRESETS: dict[str, dict[str, Any]] = {
    # SayAnything Appendix B: 15 Euler steps, guidance at every step, 16-frame segments sharing 4 frames.
    "paper": {"sampler": "euler", "num_steps": 15, "guidance_interval": (0.0, math.inf), "overlap": 4},
    # bench_results/sampling_demo.md: 6 Euler steps, the unconditional pass only for sigma in (0.25, 5] (2 of the 6
    # on the demo model's 20 -> 0.002 schedule), segments sharing 2 frames (seams stay at the truth's level).
    "fast": {"sampler": "euler", "num_steps": 6, "guidance_interval": (0.25, 5.0), "overlap": 2},
    # issue 28: a consistency student's 2 passes (re-noised once), segments sharing 2 frames as in fast.
    "student": {"sampler": "consistency", "num_steps": 2, "guidance_interval": (0.0, math.inf), "overlap": 2},
}
PRESET_FIELDS = ("sampler", "num_steps", "guidance_interval", "overlap")


def check_preset(name: str) -> None:
    """A ValueError naming the known presets when ``name`` is not one."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")


def fill_from_preset(name: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (of :data:`PRESET_FIELDS`) with every None replaced by preset ``name``'s value."""
    check_preset(name)
    filled = {k: PRESETS[name][k] if values.get(k) is None else values[k] for k in PRESET_FIELDS}
    get_sampler(filled["sampler"])  # fails early, naming the known samplers
    filled["guidance_interval"] = tuple(float(v) for v in filled["guidance_interval"])
    return filled
