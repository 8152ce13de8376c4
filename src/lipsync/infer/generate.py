"""Phases 4-6 of a call: audio features, the reference condition, and per segment generate -> blend ->
paste -> write. Each phase takes what it needs and returns what it made.

Memory is one segment of frames plus a small decoded window, whatever the video's length; the output is
written incrementally to a temporary name and renamed at the end (:class:`lipsync.media.VideoWriter`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from lipsync.data.batch import to_model_range, to_pixel_range
from lipsync.data.faces import FaceBackend
from lipsync.data.masks import landmark_boxes, render_masks
from lipsync.infer.frames import FrameSource
from lipsync.infer.options import InferenceOptions
from lipsync.infer.paste import crop_to_frame, paste_crop
from lipsync.infer.plan import FramePlan, Inputs
from lipsync.infer.segments import OverlapBlender, Segment, frame_noise, plan_segments
from lipsync.infer.silence import mute_frames
from lipsync.media import MODEL_SAMPLE_RATE, VideoWriter
from lipsync.models.audio import audio_windows
from lipsync.models.net import ReferenceCondition
from lipsync.prepare.crop import CropSpec
from lipsync.sampling import GuidedDenoiser, get_sampler
from lipsync.sampling.samplers import CONSISTENCY

# The re-noise of a student's i-th pass draws per-frame noise seeded ``seed + i * RENOISE_SEED_STEP``: per
# frame, as the initial noise, so frames shared by two segments are re-noised alike.
RENOISE_SEED_STEP = 1 << 32


@dataclass(frozen=True)
class Model:
    """The trained parts generation uses, and the preprocessing they were trained with."""

    net: nn.Module  # LipSyncNet
    vae: nn.Module
    denoiser: nn.Module  # the net under its preconditioning
    crop: CropSpec
    audio_context: int  # m: a frame hears frames t-m .. t+m
    model_fps: float
    device: torch.device


@dataclass(frozen=True)
class Sampling:
    """How each segment is sampled: Karras sigmas, guidance scales, the seed of the per-frame noise, the
    solver (a name in ``lipsync.sampling.SAMPLERS``) and the sigma interval where guidance runs."""

    sigmas: Tensor
    guidance_scale: float
    audio_guidance_scale: float | None
    seed: int
    sampler: str = "euler"
    guidance_interval: tuple[float, float] = (0.0, math.inf)


@dataclass(frozen=True)
class Conditions:
    """What every segment is conditioned on: Whisper steps of the whole track and the reference."""

    audio: Tensor  # (S, D)
    reference: ReferenceCondition


# 4. audio ----------------------------------------------------------------------------------------
def audio_features(encoder: nn.Module, wave: np.ndarray, plan: FramePlan, silence: str,
                   device: torch.device) -> Tensor:
    """Whisper steps ``(S, D)`` of the whole track, once (a few kB per second of audio); under the
    ``close`` policy the model hears digital silence in the silent frames."""
    if silence == "close" and plan.silent.any():
        wave = mute_frames(wave, MODEL_SAMPLE_RATE, float(plan.info.fps), plan.silent)
    return encoder(torch.from_numpy(np.ascontiguousarray(wave)))[0].to(device)


# 5. reference ------------------------------------------------------------------------------------
def reference_condition(model: Model, plan: FramePlan) -> ReferenceCondition:
    """ID-Guider features of the seeded reference frame and its mask, once per video.

    (A Table 3 ablation net takes from the reference what its ``reference_condition`` says.)
    """
    with FrameSource(plan.info.path, plan.pts, capacity=1) as source:
        frame = source[plan.reference_source]
    ref, ref_mask = model_inputs(model, plan, [plan.reference], [frame])
    return model.net.reference_condition(model.vae.encode, ref[0], ref_mask[0])


def model_inputs(
    model: Model, plan: FramePlan, out_frames: list[int], frames: list[np.ndarray]
) -> tuple[Tensor, Tensor]:
    """Crops ``(1, T, 3, S, S)`` in [-1, 1] and masks ``(1, T, 1, S, S)``, as training prepares them."""
    crops = np.stack([model.crop.crop(f, plan.crops[t]) for t, f in zip(out_frames, frames)])
    video = to_model_range(torch.from_numpy(crops).permute(0, 3, 1, 2))
    size = crops.shape[1]
    masks = torch.from_numpy(render_masks(plan.mask_boxes[out_frames], size, size))
    return video[None].to(model.device), masks[None].to(model.device)


# 6. generate -------------------------------------------------------------------------------------
def generate_segment(model: Model, plan: FramePlan, seg: Segment, frames: list[np.ndarray],
                     conditions: Conditions, sampling: Sampling) -> np.ndarray:
    """One segment's crops, ``(T, S, S, 3)`` float in [0, 255]: the guided solver from seeded noise."""
    out_frames = list(range(seg.start, seg.stop))
    video, mask = model_inputs(model, plan, out_frames, frames)
    audio = audio_windows(conditions.audio, np.array(out_frames), float(plan.info.fps), model.audio_context,
                          model.model_fps)[None]
    # As in training: z_m = E(V * (1 - M)) once per segment (or the net's Table 3 variant of the
    # conditions), never once per denoising step.
    cond = model.net.clip_conditions(model.vae.encode, conditions.reference, video * (1 - mask), mask,
                                     audio.to(video.dtype))
    z_m = cond["concat"]
    shape = tuple(z_m.shape[2:])
    noise = frame_noise(sampling.seed, out_frames, shape, model.device, z_m.dtype)[None]
    guided = GuidedDenoiser(model.denoiser, cond, sampling.guidance_scale, sampling.audio_guidance_scale,
                            sampling.guidance_interval)
    extra: dict[str, object] = {}
    if sampling.sampler == CONSISTENCY:
        extra["noise_sampler"] = lambda i: frame_noise(sampling.seed + i * RENOISE_SEED_STEP, out_frames,
                                                       shape, model.device, z_m.dtype)[None]
    z = get_sampler(sampling.sampler)(guided, noise * sampling.sigmas[0], sampling.sigmas, **extra)
    pixels = to_pixel_range(model.vae.decode(z)[0])  # (T, 3, S, S)
    return pixels.permute(0, 2, 3, 1).float().cpu().numpy()


def render(plan: FramePlan, inputs: Inputs, model: Model, conditions: Conditions | None, sampling: Sampling,
           detector: FaceBackend | None, output: str | os.PathLike, opts: InferenceOptions) -> np.ndarray:
    """Generate every segment with an edit, cross-fade overlaps, paste back and write ``output``.

    ``detector`` finds the face in the generated crops (None: paste the original region only). Returns
    the paste region of every output frame, ``(N, 4)`` int (zeros where nothing was pasted).
    """
    info, n = plan.info, plan.num_frames
    segments = plan_segments(n, opts.segment_length, opts.overlap)
    blender, regions = OverlapBlender(), np.zeros((n, 4), np.int64)
    writer = VideoWriter(output, info.fps, info.width, info.height, crf=opts.crf, audio=inputs.native,
                         audio_rate=inputs.native_rate, lossless=opts.lossless)
    with FrameSource(info.path, plan.pts, capacity=2 * opts.segment_length + 1) as source, writer:
        for k, seg in enumerate(tqdm(segments, desc="lip sync", unit="segment", disable=not opts.progress)):
            crops = None
            if conditions is not None and plan.weights[seg.start : seg.stop].max() > 0:
                frames = [source[int(plan.source_index[t])] for t in range(seg.start, seg.stop)]
                crops = generate_segment(model, plan, seg, frames, conditions, sampling)
            next_start = segments[k + 1].start if k + 1 < len(segments) else None
            start, stop, crops = blender.push(seg, crops, next_start)
            found = generated_regions(crops, start, detector, opts.paste_region)
            for t in range(start, stop):
                crop, box = (None, None) if crops is None else (crops[t - start], found[t - start])
                frame, regions[t] = paste_frame(plan, t, source[int(plan.source_index[t])], crop, box,
                                                model.crop, opts)
                writer.write(frame)
    return regions


def paste_frame(plan: FramePlan, t: int, frame: np.ndarray, crop: np.ndarray | None, generated: np.ndarray | None,
                spec: CropSpec, opts: InferenceOptions) -> tuple[np.ndarray, np.ndarray]:
    """Output frame ``t``: the generated ``crop`` pasted into its source ``frame`` (the source unchanged
    where there is no crop or the edit weight is 0), and the rectangle where it may differ."""
    if crop is None or plan.weights[t] <= 0:
        return frame, np.zeros(4, np.int64)
    size = int(spec.resolution)
    if opts.paste_region == "mask":
        original = crop_to_frame(plan.mask_boxes[t], plan.crops[t], size)
    else:
        original = plan.face_boxes[t].astype(np.float64)
    pasted = paste_crop(frame, crop, plan.crops[t], original, generated, size, opts.paste_blend, opts.paste_dilate,
                        opts.paste_feather, float(plan.weights[t]))
    return pasted.frame, pasted.region


def generated_regions(crops: np.ndarray | None, start: int, detector: FaceBackend | None,
                      paste_region: str) -> list[np.ndarray | None]:
    """The face box (``paste_region="face"``) or the edit region (lips and lower face) found in each
    generated crop, in crop pixels; None where none was found or no detector is given."""
    if crops is None:
        return []
    if detector is None:
        return [None] * len(crops)
    images = [(start + i, np.clip(np.rint(c), 0, 255).astype(np.uint8)) for i, c in enumerate(crops)]
    track = detector.track(Path("<generated>"), images)
    if paste_region == "face":
        boxes = track.boxes
    else:
        idx = np.union1d(track.layout.mouth_idx, track.layout.lower_face_idx)
        boxes = landmark_boxes(track.landmarks, idx)
    return [None if np.isnan(b).any() else b for b in boxes]
