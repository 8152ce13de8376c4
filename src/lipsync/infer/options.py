"""What a call can change (:class:`InferenceOptions`, ``conf/infer.yaml`` key ``options``), how the
model's own sampling settings fill what it leaves open, and what a call reports (:class:`InferenceResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from lipsync.infer.face_choice import ShotDecision, parse_face
from lipsync.infer.paste import PASTE_BLENDS
from lipsync.infer.silence import check_policy
from lipsync.sampling.presets import PRESET_FIELDS, fill_from_preset
from lipsync.sampling.samplers import SVD_SIGMA_MAX, SVD_SIGMA_MIN


@dataclass
class InferenceOptions:
    """Everything a call can change (``conf/infer.yaml`` key ``options``); defaults are the paper's.

    Attributes:
        preset: fills every sampling option left at None (``sampler``, ``num_steps``,
            ``guidance_interval``, ``overlap``): "paper" (SayAnything's settings), "fast" (under a
            quarter of the network's compute; ``lipsync.sampling.presets``, measured in
            ``bench_results/sampling_demo.md``) or "student" (a distilled student's 2 passes, no CFG
            batch; only for a model made by ``experiment=distill``).
        sampler: ODE solver on Karras sigmas: "euler" (paper), "heun" (EDM's 2nd order) or "dpmpp_2m"
            (DPM-Solver++(2M)); or "consistency", a student's passes at the levels its folder records.
            None = the preset's.
        num_steps: solver steps (paper: 15), or a student's passes (1 or 2). None = the preset's.
        guidance_interval: (lo, hi): guidance only where lo < sigma <= hi, the conditional pass alone
            elsewhere (Kynkaanniemi et al. 2024). None = the preset's (paper: every step).
        guidance_scale: classifier-free guidance scale; the unconditional pass drops reference and
            audio, as in training (paper: 3.0). 1.0 runs the conditional pass only. None = the model's
            own (``sampling.cfg_scale`` of its training config, recorded by convert), else 3.0.
        audio_guidance_scale: set to guide audio separately: ``D_u + s (D_ref - D_u) + s_a (D_c - D_ref)``.
        sigma_min, sigma_max, rho: the Karras schedule; None = the model's own range (the ``sampling``
            node of its training config, recorded in the pipeline config), SVD's 0.002 / 700 when absent.
        segment_length, overlap: frames per segment and shared with the next (paper: 16 and 4; overlap
            None = the preset's).
        seed: seeds the reference choice and the per-frame initial noise.
        max_gap: face-less runs up to this many frames are filled from context (a detector blink);
            longer runs pass through unchanged.
        fade: frames over which the edit fades in and out around pass-through stretches.
        junction: frames of slow-down on each side of a ping-pong turn.
        silence: "none", "keep" (original mouth in silences) or "close" (the model hears digital silence).
        silence_threshold_db: quiet = this many dB under the track's speech level (95th percentile).
        silence_min_duration: seconds a quiet run must last to count as silence.
        paste_region: "mask" (the model's edit rectangle, default) or "face" (the whole face box).
        paste_blend: "feather" (the paper's alpha ramp over the dilated region) or "poisson" (the
            generated gradients inside the edit region, the source's values on its border, so no colour
            offset can draw a box). :mod:`lipsync.infer.paste`.
        paste_dilate: dilation of each paste box, fraction of its size (feather only).
        paste_feather: width of the inward alpha ramp, fraction of the box's shorter side (feather only).
        detect_generated: also detect the face in the generated crops and paste the union of boxes
            (feather only: a Poisson paste keeps to the edit region).
        face: which face to dub where several are in frame: "largest", "speaker", "index:N" (or N),
            "point:X,Y", "box:X0,Y0,X1,Y1" (source pixels), decided per shot (:mod:`.face_choice`).
        crf: H.264 quality of the output (lower = closer to the source). Every pixel is re-encoded, the
            ones outside the paste region too: they stay close to the source's, not equal to them.
        lossless: write H.264 in RGB at quantizer 0 instead (``crf`` ignored): every pixel outside the
            paste region decodes to exactly the source's decoded value (files several times larger, and
            not every player plays them).
        progress: show tqdm bars.
    """

    preset: str = "paper"
    sampler: str | None = None
    num_steps: int | None = None
    guidance_interval: tuple[float, float] | None = None
    guidance_scale: float | None = None
    audio_guidance_scale: float | None = None
    sigma_min: float | None = None
    sigma_max: float | None = None
    rho: float = 7.0
    segment_length: int = 16
    overlap: int | None = None
    seed: int = 0
    max_gap: int = 4
    fade: int = 6
    junction: int = 4
    silence: str = "none"
    silence_threshold_db: float = -35.0
    silence_min_duration: float = 0.3
    paste_region: str = "mask"
    paste_blend: str = "feather"
    paste_dilate: float = 0.1
    paste_feather: float = 0.15
    detect_generated: bool = True
    face: str | int = "largest"
    crf: int = 18
    lossless: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        check_policy(self.silence)
        parse_face(self.face)
        if self.paste_region not in ("mask", "face"):
            raise ValueError(f"paste_region must be 'mask' or 'face', got {self.paste_region!r}")
        if self.paste_blend not in PASTE_BLENDS:
            raise ValueError(f"paste_blend must be one of {PASTE_BLENDS}, got {self.paste_blend!r}")
        r = fill_from_preset(self.preset, {k: getattr(self, k) for k in PRESET_FIELDS})
        if r["num_steps"] < 1 or self.segment_length < 1 or not 0 <= r["overlap"] < self.segment_length:
            raise ValueError(
                f"need num_steps >= 1, segment_length >= 1 and 0 <= overlap < segment_length; got "
                f"{r['num_steps']}, {self.segment_length}, {r['overlap']}"
            )
        if len(r["guidance_interval"]) != 2 or not 0 <= r["guidance_interval"][0] < r["guidance_interval"][1]:
            raise ValueError(f"guidance_interval must be [lo, hi] with 0 <= lo < hi, got {self.guidance_interval}")

    def resolved(self) -> "InferenceOptions":
        """These options with the preset's values in every sampling option left at None."""
        return replace(self, **fill_from_preset(self.preset, {k: getattr(self, k) for k in PRESET_FIELDS}))


PAPER_GUIDANCE = 3.0


@dataclass
class InferenceResult:
    """What a call produced, per output frame where it matters (for checks and reports).

    Attributes:
        output: the written video.
        num_frames: output frames (= audio duration x source fps, rounded).
        fps: the source frame rate, kept.
        source_index: (N,) source frame shown (before editing) by each output frame.
        edit_weight: (N,) weight of the edit per frame (0 = source frame passed through).
        paste_region: (N, 4) int x0, y0, x1, y1 (exclusive) outside which the frame is the source's.
        silent: (N,) frames in silence under the silence policy's detector.
        reference_frame: source index of the identity reference (-1 when no frame had a face).
        seconds: wall time of the call.
        timings: wall seconds per phase (inputs, faces, audio, reference, generate).
        face_decisions: the face dubbed in each shot of the source and why (``options.face``); each
            one's ``line`` is what the CLI prints.
    """

    output: Path
    num_frames: int
    fps: Fraction
    source_index: np.ndarray
    edit_weight: np.ndarray
    paste_region: np.ndarray
    silent: np.ndarray
    reference_frame: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    face_decisions: tuple[ShotDecision, ...] = ()


def guidance_scale(opts: InferenceOptions, recorded: Mapping[str, Any]) -> float:
    """The CFG scale: the options', else the model's recorded ``cfg_scale``, else the paper's 3.0."""
    if opts.guidance_scale is not None:
        return float(opts.guidance_scale)
    return float(recorded.get("cfg_scale", PAPER_GUIDANCE))


def sigma_range(opts: InferenceOptions, recorded: Mapping[str, Any]) -> tuple[float, float]:
    """(sigma_min, sigma_max) of the schedule: the options', else the model's recorded ones, else SVD's."""
    lo = opts.sigma_min if opts.sigma_min is not None else recorded.get("sigma_min", SVD_SIGMA_MIN)
    hi = opts.sigma_max if opts.sigma_max is not None else recorded.get("sigma_max", SVD_SIGMA_MAX)
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {lo} and {hi}")
    return float(lo), float(hi)


def student_levels(recorded: Mapping[str, Any]) -> list[float]:
    """The noise levels of a distilled student's passes (``student_sigmas``, recorded by convert from an
    ``experiment=distill`` run); a one-line ValueError for any other model."""
    levels = recorded.get("student_sigmas")
    if not levels:
        raise ValueError("preset=student (sampler consistency) needs a distilled student (a folder converted "
                         "from an experiment=distill run); this model records no sampling.student_sigmas")
    return [float(v) for v in levels]


def options_from_mapping(values: Mapping[str, Any]) -> InferenceOptions:
    """:class:`InferenceOptions` from a config mapping; unknown keys are a ValueError naming them."""
    known = {f.name for f in fields(InferenceOptions)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown inference options {unknown}; known: {sorted(known)}")
    return InferenceOptions(**dict(values))
