"""``LipSyncPipeline``: re-render the mouth of a video so it speaks a new audio track (SPEC section 6).

One call runs numbered phases, each a short method:

1. inputs: probe the video, decode the driving audio twice (its own rate and channels for the output,
   16 kHz mono for the model) and map every output frame to a source frame (:mod:`.lengths`);
2. faces: detect per source frame in one streaming pass, fill short gaps, square crops smoothed over
   time, the training mask in crop pixels (:mod:`.tracking`, ``prepare.crop``, ``data.masks``);
3. plan: per-frame edit weights (face-less stretches and the silence policy fade in and out), the
   seeded reference frame;
4. audio: Whisper features once for the whole track, windows per output frame at its own time;
5. reference: the ID-Guider once per video;
6. generate: per 16-frame segment, crops -> masked-video latents (the net's ``clip_conditions``, as in
   training) -> guided Euler on Karras sigmas ->
   decode -> cross-fade with the previous segment -> paste back -> write (:mod:`.segments`, :mod:`.paste`).

Memory is one segment of frames plus a small decoded window, whatever the video's length; the output
is written incrementally to a temporary name and renamed at the end.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, fields, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from lipsync.data.faces import FaceBackend, MediaPipeFaces
from lipsync.data.masks import MaskSpec, landmark_boxes, render_masks
from lipsync.infer import checkpoint as ckpt_io
from lipsync.infer.face_choice import choose_face, parse_face
from lipsync.infer.frames import FrameSource, scan
from lipsync.infer.lengths import num_output_frames, source_indices
from lipsync.infer.paste import crop_to_frame, dilate_box, paste_back
from lipsync.infer.segments import OverlapBlender, Segment, frame_noise, plan_segments
from lipsync.infer.silence import check_policy, mute_frames, silent_frames
from lipsync.infer.tracking import FaceTrackSummary, edit_weights, hold_nearest
from lipsync.media import MODEL_SAMPLE_RATE, MediaError, VideoInfo, VideoWriter, probe, read_audio
from lipsync.models.audio import STEPS_PER_SECOND
from lipsync.models.denoiser import Denoiser
from lipsync.models.net import ReferenceCondition
from lipsync.sampling import GuidedDenoiser, karras_sigmas, sample_euler
from lipsync.sampling.samplers import SVD_SIGMA_MAX, SVD_SIGMA_MIN

log = logging.getLogger(__name__)


@dataclass
class InferenceOptions:
    """Everything a call can change (``conf/infer.yaml`` key ``options``); defaults are the paper's.

    Attributes:
        num_steps: Euler steps on Karras sigmas (paper: 15).
        guidance_scale: classifier-free guidance scale; the unconditional pass drops reference and
            audio, as in training (paper: 3.0). 1.0 runs the conditional pass only. None = the model's
            own (``sampling.cfg_scale`` of its training config, recorded by convert), else 3.0.
        audio_guidance_scale: set to guide audio separately: ``D_u + s (D_ref - D_u) + s_a (D_c - D_ref)``.
        sigma_min, sigma_max, rho: the Karras schedule; None = the model's own range (the ``sampling``
            node of its training config, recorded in the pipeline config), SVD's 0.002 / 700 when absent.
        segment_length, overlap: frames per segment and shared with the next (paper: 16 and 4).
        seed: seeds the reference choice and the per-frame initial noise.
        max_gap: face-less runs up to this many frames are filled from context (a detector blink);
            longer runs pass through unchanged.
        fade: frames over which the edit fades in and out around pass-through stretches.
        junction: frames of slow-down on each side of a ping-pong turn.
        silence: "none", "keep" (original mouth in silences) or "close" (the model hears digital silence).
        silence_threshold_db: quiet = this many dB under the track's speech level (95th percentile).
        silence_min_duration: seconds a quiet run must last to count as silence.
        paste_region: "mask" (the model's edit rectangle, default) or "face" (the whole face box).
        paste_dilate: dilation of each paste box, fraction of its size.
        paste_feather: width of the inward alpha ramp, fraction of the box's shorter side.
        detect_generated: also detect the face in the generated crops and paste the union of boxes.
        face: which face to dub where several are in frame: "largest", "speaker", "index:N" (or N),
            "point:X,Y", "box:X0,Y0,X1,Y1" (source pixels), decided per shot (:mod:`.face_choice`).
        crf: H.264 quality of the output (lower = closer to the source).
        progress: show tqdm bars.
    """

    num_steps: int = 15
    guidance_scale: float | None = None
    audio_guidance_scale: float | None = None
    sigma_min: float | None = None
    sigma_max: float | None = None
    rho: float = 7.0
    segment_length: int = 16
    overlap: int = 4
    seed: int = 0
    max_gap: int = 4
    fade: int = 6
    junction: int = 4
    silence: str = "none"
    silence_threshold_db: float = -35.0
    silence_min_duration: float = 0.3
    paste_region: str = "mask"
    paste_dilate: float = 0.1
    paste_feather: float = 0.15
    detect_generated: bool = True
    face: str | int = "largest"
    crf: int = 18
    progress: bool = True

    def __post_init__(self) -> None:
        check_policy(self.silence)
        parse_face(self.face)
        if self.paste_region not in ("mask", "face"):
            raise ValueError(f"paste_region must be 'mask' or 'face', got {self.paste_region!r}")
        if self.num_steps < 1 or self.segment_length < 1 or not 0 <= self.overlap < self.segment_length:
            raise ValueError(
                f"need num_steps >= 1, segment_length >= 1 and 0 <= overlap < segment_length; got "
                f"{self.num_steps}, {self.segment_length}, {self.overlap}"
            )


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


class _Clock:
    """Wall time per phase."""

    def __init__(self) -> None:
        self._start = self._last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now

    @property
    def total(self) -> float:
        return time.perf_counter() - self._start


@dataclass
class _Plan:
    """Per-output-frame decisions made before generation (all small arrays, no pixels)."""

    info: VideoInfo
    source_index: np.ndarray  # (N,)
    pts: np.ndarray  # (num source frames scanned,)
    crops: np.ndarray  # (N, 4) square crop in frame pixels
    mask_boxes: np.ndarray  # (N, 4) edit rectangle in crop pixels
    face_boxes: np.ndarray  # (N, 4) face box in frame pixels (held over face-less frames)
    weights: np.ndarray  # (N,) edit weight
    silent: np.ndarray  # (N,) bool
    reference: int  # output frame index of the reference, -1 if none
    paste_regions: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))

    @property
    def num_frames(self) -> int:
        return len(self.source_index)


def audio_windows(
    feats: Tensor, frames: np.ndarray, fps: float, m: int = 2, model_fps: float = 25.0
) -> Tensor:
    """Audio-step windows for frames at any rate, ``(T, k (2m+1), D)`` with ``k = 50 / model_fps``.

    The model was trained on 25 fps frames that each see the 2 (2m+1) = 10 steps (200 ms) starting at
    step ``k (f - m)``. A frame at time ``t / fps`` gets the same span starting at step
    ``round(50 t / fps) - k m``, so 29.97 fps video reads exactly the audio under each of its frames; at
    25 fps this equals :func:`lipsync.models.audio.frame_windows`. Steps outside the audio are zeros.
    """
    k = int(round(STEPS_PER_SECOND / model_fps))
    first = (
        np.rint(np.asarray(frames, dtype=np.float64) * STEPS_PER_SECOND / float(fps)).astype(np.int64) - k * m
    )
    steps = torch.as_tensor(first[:, None] + np.arange(k * (2 * m + 1))[None, :], device=feats.device)
    inside = (steps >= 0) & (steps < feats.shape[0])
    if feats.shape[0] == 0:
        return feats.new_zeros(*steps.shape, feats.shape[1])
    return feats[steps.clamp(0, feats.shape[0] - 1)] * inside[..., None].to(feats.dtype)


class LipSyncPipeline:
    """Audio-driven lip sync of a whole video with a trained SayAnything model.

    Args:
        net: the raw network F (``LipSyncNet``).
        vae: the codec (``SVDVAE`` or ``SpaceToDepthVAE``).
        audio_encoder: ``WhisperAudioEncoder`` (16 kHz mono -> 50 steps/s).
        precond: the preconditioning the net was trained with (``SVDPrecond``).
        mask: the training mask (``AdaptiveMask`` ...), applied in crop pixels.
        crop: the training crop (``lipsync.prepare.crop.CropSpec``: resolution, scale, smoothing).
        config: the component configs (``_target_`` nodes) and ``preprocess`` (audio_context, model_fps),
            written by :meth:`save_pretrained`.
        faces: face backend for the source video (default MediaPipe).
        generated_faces: face backend for the generated crops (default: a MediaPipe detector); None skips it.
        device: where the model runs.
    """

    def __init__(
        self,
        net: nn.Module,
        vae: nn.Module,
        audio_encoder: nn.Module,
        precond: Any,
        mask: MaskSpec,
        crop: Any,
        config: Mapping[str, Any],
        faces: FaceBackend | None = None,
        generated_faces: FaceBackend | None | str = "default",
        device: str | torch.device = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.net = net.eval().to(self.device)
        self.vae = vae.eval().to(self.device)
        self.audio_encoder = audio_encoder.eval().to(self.device)
        self.denoiser = Denoiser(self.net, precond)
        self.mask, self.crop = mask, crop
        self.config = dict(config)
        pre = self.config.get("preprocess", {})
        self.audio_context = int(pre.get("audio_context", 2))
        self.model_fps = float(pre.get("model_fps", 25))
        want = getattr(getattr(net, "audio_proj", None), "in_features", None)
        have = getattr(audio_encoder, "dim", None)
        if want is not None and have is not None and want != have:
            raise ckpt_io.CheckpointError(
                f"the audio encoder gives {have}-d features but the net was trained on {want}-d ones "
                "(components.audio_encoder does not match components.net.audio_dim)"
            )
        self.faces = faces if faces is not None else MediaPipeFaces()
        self.generated_faces = MediaPipeFaces() if generated_faces == "default" else generated_faces

    # --- construction and checkpoints -------------------------------------------------------------
    @classmethod
    def from_config(cls, config: Mapping[str, Any], **kwargs: Any) -> "LipSyncPipeline":
        """Build every component from its ``_target_`` node (random weights for the networks)."""
        parts = {
            name: ckpt_io.build_component(config["components"][name], name) for name in ckpt_io.COMPONENTS
        }
        return cls(**parts, config=config, **kwargs)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, train_config: str | os.PathLike | None = None, **kwargs: Any
    ) -> "LipSyncPipeline":
        """Load a :meth:`save_pretrained` folder, or convert a training ``.ckpt`` on the fly.

        Raises:
            CheckpointError: missing, unreadable, inconsistent, or unsafe (a pickle that would run code).
        """
        path = Path(path)
        if path.is_dir():
            config = ckpt_io.read_config(path)
            state = ckpt_io.read_weights(path / ckpt_io.WEIGHTS_NAME)
            pipe = cls.from_config(config, **kwargs)
            source = path / ckpt_io.WEIGHTS_NAME
        elif path.is_file():
            from lipsync.infer.convert import pipeline_config_from_training

            checkpoint = ckpt_io.load_torch_checkpoint(path)
            config = pipeline_config_from_training(path, train_config, checkpoint)
            pipe = cls.from_config(config, **kwargs)
            state = ckpt_io.training_state(checkpoint, path)
            state.update({f"audio_encoder.{k}": v for k, v in pipe.audio_encoder.state_dict().items()})
            source = path
        else:
            raise ckpt_io.CheckpointError(
                f"{path}: no such checkpoint (a save_pretrained folder or a training .ckpt)"
            )
        for name in ckpt_io.WEIGHTED:
            ckpt_io.load_component_weights(getattr(pipe, name), state, name, source)
        return pipe

    def guidance_scale(self, opts: InferenceOptions) -> float:
        """The CFG scale: the options', else the model's recorded ``cfg_scale``, else the paper's 3.0."""
        if opts.guidance_scale is not None:
            return float(opts.guidance_scale)
        return float((self.config.get("sampling") or {}).get("cfg_scale", PAPER_GUIDANCE))

    def sigma_range(self, opts: InferenceOptions) -> tuple[float, float]:
        """(sigma_min, sigma_max) of the schedule: the options', else the model's, else SVD's."""
        model = self.config.get("sampling") or {}
        lo = opts.sigma_min if opts.sigma_min is not None else model.get("sigma_min", SVD_SIGMA_MIN)
        hi = opts.sigma_max if opts.sigma_max is not None else model.get("sigma_max", SVD_SIGMA_MAX)
        if not 0 < lo < hi:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {lo} and {hi}")
        return float(lo), float(hi)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``model.safetensors``; :meth:`from_pretrained` reads them back exactly."""
        config = dict(self.config)
        config["components"] = {
            **config["components"],
            "vae": ckpt_io.describe_vae(self.vae),
            "audio_encoder": ckpt_io.describe_audio_encoder(self.audio_encoder),
        }
        modules = {name: getattr(self, name) for name in ckpt_io.WEIGHTED}
        return ckpt_io.save_folder(directory, config, modules)

    # --- the call ---------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        video: str | os.PathLike,
        audio: str | os.PathLike,
        output: str | os.PathLike,
        options: InferenceOptions | None = None,
        **overrides: Any,
    ) -> InferenceResult:
        """Dub ``video`` with ``audio`` into ``output`` (mp4, written atomically).

        Raises:
            MediaError: a missing or unreadable file, no video or no audio stream, an empty clip.
        """
        opts = replace(options or InferenceOptions(), **overrides)
        clock = _Clock()
        info, native, native_rate, wave = self._read_inputs(video, audio)  # 1. inputs
        n_out = num_output_frames(native.shape[-1], native_rate, float(info.fps))
        src = source_indices(info.num_frames, n_out, opts.junction)
        clock.lap("inputs")
        plan = self._plan(info, src, wave, opts)  # 2-3. faces, plan
        clock.lap("faces")
        feats, reference = None, None
        if plan.reference >= 0 and plan.weights.max() > 0:
            feats = self._audio_features(wave, plan, opts)  # 4. audio
            clock.lap("audio")
            reference = self._reference_condition(plan)  # 5. reference
            clock.lap("reference")
        else:
            log.warning(
                "%s: no frame with a face to edit; the video passes through with the new audio", video
            )
        self._generate(plan, feats, reference, native, native_rate, output, opts)  # 6. generate, paste, write
        clock.lap("generate")
        src = plan.source_index
        return InferenceResult(
            Path(output),
            n_out,
            info.fps,
            src,
            plan.weights,
            plan.paste_regions,
            plan.silent,
            int(src[plan.reference]) if plan.reference >= 0 else -1,
            clock.total,
            clock.laps,
        )

    # 1. inputs -------------------------------------------------------------------------------------
    def _read_inputs(
        self, video: str | os.PathLike, audio: str | os.PathLike
    ) -> tuple[VideoInfo, np.ndarray, int, np.ndarray]:
        info = probe(video)
        if info.num_frames < 1:
            raise MediaError(f"{video}: holds no video frames")
        native, native_rate = read_audio(audio, sample_rate=None, mono=False)  # carried to the output as is
        if native.shape[-1] == 0:
            raise MediaError(f"{audio}: audio stream holds no samples")
        wave, _ = read_audio(audio, sample_rate=MODEL_SAMPLE_RATE, mono=True)  # the model's input
        return info, native, native_rate, wave

    # 2-3. faces and plan ---------------------------------------------------------------------------
    def _plan(self, info: VideoInfo, src: np.ndarray, wave: np.ndarray, opts: InferenceOptions) -> _Plan:
        track, pts = self._track(info, int(src.max()) + 1, opts)
        if len(pts) < int(src.max()) + 1:  # the container's frame count was optimistic: map onto what decodes
            log.warning(
                "%s: decoded %d frames, the container promised %d", info.path, len(pts), info.num_frames
            )
            src = source_indices(len(pts), len(src), opts.junction)
        silent = silent_frames(
            wave,
            MODEL_SAMPLE_RATE,
            float(info.fps),
            len(src),
            opts.silence_threshold_db,
            min_duration=opts.silence_min_duration,
        )
        editable = track.found[src] & ~(silent if opts.silence == "keep" else np.zeros_like(silent))
        # SPEC 6: the reference is a random (seeded) frame of the video, among those with a detected face.
        candidates = np.flatnonzero(track.detected[src])
        reference = int(np.random.default_rng(opts.seed).choice(candidates)) if candidates.size else -1
        crops, face_boxes = self._crops(track)
        return _Plan(
            info,
            src,
            pts,
            crops[src],
            self._mask_boxes(track, crops, src),
            face_boxes[src],
            edit_weights(editable, opts.fade),
            silent,
            reference,
        )

    def _track(
        self, info: VideoInfo, used: int, opts: InferenceOptions
    ) -> tuple[FaceTrackSummary, np.ndarray]:
        """Faces of source frames ``[0, used)`` in one decoding pass (frames past the audio are never
        decoded), short gaps filled; also every frame's timestamp, for seeking later."""
        pts: list[int] = []

        def frames() -> Iterator[np.ndarray]:
            with tqdm(total=used, desc="faces", unit="frame", disable=not opts.progress, leave=False) as bar:
                for p, frame in scan(info.path, used):
                    pts.append(-1 if p is None else int(p))
                    bar.update()
                    yield frame

        selection = choose_face(frames(), self.faces, info.path, float(info.fps), opts.face)
        track = selection.summary.filled(opts.max_gap)
        return track, np.array(pts, dtype=np.int64)

    def _crops(self, track: FaceTrackSummary) -> tuple[np.ndarray, np.ndarray]:
        """Training crop squares per source frame, smoothed within runs of faces; face-less frames hold."""
        found = track.found
        if not found.any():
            h = np.full((len(found), 4), np.nan, np.float32)
            return np.tile(np.array([0, 0, 1, 1], np.float32), (len(found), 1)), h
        crops = np.full((len(found), 4), np.nan, np.float32)
        for start, stop in track.runs():  # never smoothed across a cut or a change of face
            crops[start:stop] = self.crop.boxes(track.boxes[start:stop])
        return hold_nearest(crops, found), hold_nearest(track.boxes, found)

    def _mask_boxes(self, track: FaceTrackSummary, crops: np.ndarray, src: np.ndarray) -> np.ndarray:
        """The training mask's rectangles in crop pixels, over the output frames in order, ``(N, 4)``."""
        found = track.found
        if not found.any():
            return np.zeros((len(src), 4), np.float32)
        landmarks = hold_nearest(track.landmarks, found)[src]
        in_crop = self.crop.to_crop(landmarks, crops[src])
        size = int(self.crop.resolution)
        return np.asarray(self.mask.boxes(in_crop, track.layout, size, size), dtype=np.float32)

    # 4. audio --------------------------------------------------------------------------------------
    def _audio_features(self, wave: np.ndarray, plan: _Plan, opts: InferenceOptions) -> Tensor:
        """Whisper steps ``(S, D)`` of the whole track, once (a few kB per second of audio)."""
        if opts.silence == "close" and plan.silent.any():
            wave = mute_frames(wave, MODEL_SAMPLE_RATE, float(plan.info.fps), plan.silent)
        return self.audio_encoder(torch.from_numpy(np.ascontiguousarray(wave)))[0].to(self.device)

    # 5. reference ----------------------------------------------------------------------------------
    def _reference_condition(self, plan: _Plan) -> ReferenceCondition:
        """ID-Guider features of the seeded reference frame and its mask, once per video.

        (A Table 3 ablation net takes from the reference what its ``reference_condition`` says.)
        """
        with FrameSource(plan.info.path, plan.pts, capacity=1) as source:
            frame = source[int(plan.source_index[plan.reference])]
        ref, ref_mask = self._model_inputs(plan, [plan.reference], [frame])
        return self.net.reference_condition(self.vae.encode, ref[0], ref_mask[0])

    def _model_inputs(
        self, plan: _Plan, out_frames: list[int], frames: list[np.ndarray]
    ) -> tuple[Tensor, Tensor]:
        """Crops ``(1, T, 3, S, S)`` in [-1, 1] and masks ``(1, T, 1, S, S)``, as training prepares them."""
        crops = np.stack([self.crop.crop(f, plan.crops[t]) for t, f in zip(out_frames, frames)])
        video = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(127.5).sub(1)
        size = crops.shape[1]
        masks = torch.from_numpy(render_masks(plan.mask_boxes[out_frames], size, size))
        return video[None].to(self.device), masks[None].to(self.device)

    # 6. generate -----------------------------------------------------------------------------------
    def _generate(
        self,
        plan: _Plan,
        feats: Tensor | None,
        reference: ReferenceCondition | None,
        native: np.ndarray,
        native_rate: int,
        output: str | os.PathLike,
        opts: InferenceOptions,
    ) -> None:
        info, n = plan.info, plan.num_frames
        segments = plan_segments(n, opts.segment_length, opts.overlap)
        blender = OverlapBlender()
        plan.paste_regions = np.zeros((n, 4), np.int64)
        with FrameSource(info.path, plan.pts, capacity=2 * opts.segment_length + 1) as source, VideoWriter(
            output, info.fps, info.width, info.height, crf=opts.crf, audio=native, audio_rate=native_rate
        ) as writer:
            for k, seg in enumerate(
                tqdm(segments, desc="lip sync", unit="segment", disable=not opts.progress)
            ):
                active = feats is not None and plan.weights[seg.start : seg.stop].max() > 0
                result = self._segment(plan, seg, source, feats, reference, opts) if active else None
                next_start = segments[k + 1].start if k + 1 < len(segments) else None
                start, stop, crops = blender.push(seg, result, next_start)
                self._write(plan, start, stop, crops, source, writer, opts)

    def _segment(
        self,
        plan: _Plan,
        seg: Segment,
        source: FrameSource,
        feats: Tensor,
        reference: ReferenceCondition,
        opts: InferenceOptions,
    ) -> np.ndarray:
        """Generate one segment: ``(T, S, S, 3)`` float crops in [0, 255]."""
        out_frames = list(range(seg.start, seg.stop))
        frames = [source[int(plan.source_index[t])] for t in out_frames]
        video, mask = self._model_inputs(plan, out_frames, frames)
        audio = audio_windows(
            feats, np.array(out_frames), float(plan.info.fps), self.audio_context, self.model_fps
        )[None]
        # As in training: z_m = E(V * (1 - M)) once per segment (or the net's Table 3 variant of the
        # conditions), never once per denoising step.
        masked = video * (1 - mask)
        cond = self.net.clip_conditions(self.vae.encode, reference, masked, mask, audio.to(video.dtype))
        z_m = cond["concat"]
        sigmas = karras_sigmas(opts.num_steps, *self.sigma_range(opts), opts.rho, device=self.device)
        noise = frame_noise(opts.seed, out_frames, tuple(z_m.shape[2:]), self.device, z_m.dtype)[None]
        guided = GuidedDenoiser(self.denoiser, cond, self.guidance_scale(opts), opts.audio_guidance_scale)
        z = sample_euler(guided, noise * sigmas[0], sigmas)
        pixels = self.vae.decode(z)[0].clamp(-1, 1).add(1).mul(127.5)  # (T, 3, S, S)
        return pixels.permute(0, 2, 3, 1).float().cpu().numpy()

    def _write(
        self,
        plan: _Plan,
        start: int,
        stop: int,
        crops: np.ndarray | None,
        source: FrameSource,
        writer: VideoWriter,
        opts: InferenceOptions,
    ) -> None:
        """Paste released frames ``[start, stop)`` back into their source frames and write them."""
        generated = self._generated_boxes(crops, plan, start, opts)
        for t in range(start, stop):
            frame = source[int(plan.source_index[t])]
            if crops is None or plan.weights[t] <= 0:
                writer.write(frame)
                continue
            boxes = self._paste_boxes(plan, t, generated[t - start], opts)
            feather = opts.paste_feather * float(min(boxes[0][2] - boxes[0][0], boxes[0][3] - boxes[0][1]))
            pasted = paste_back(
                frame, crops[t - start], plan.crops[t], boxes, feather, float(plan.weights[t])
            )
            plan.paste_regions[t] = pasted.region
            writer.write(pasted.frame)

    def _paste_boxes(
        self, plan: _Plan, t: int, generated: np.ndarray | None, opts: InferenceOptions
    ) -> list[np.ndarray]:
        """Dilated original box (and generated box when detected) in frame pixels."""
        size = int(self.crop.resolution)
        if opts.paste_region == "mask":
            original = crop_to_frame(plan.mask_boxes[t], plan.crops[t], size)
        else:
            original = plan.face_boxes[t].astype(np.float64)
        boxes = [dilate_box(original, opts.paste_dilate)]
        if generated is not None:
            boxes.append(dilate_box(crop_to_frame(generated, plan.crops[t], size), opts.paste_dilate))
        return boxes

    def _generated_boxes(
        self, crops: np.ndarray | None, plan: _Plan, start: int, opts: InferenceOptions
    ) -> list[np.ndarray | None]:
        """Face (or edit-region) box found in each generated crop, in crop pixels; None where none."""
        if crops is None:
            return []
        if not opts.detect_generated or self.generated_faces is None:
            return [None] * len(crops)
        images = [(start + i, np.clip(np.rint(c), 0, 255).astype(np.uint8)) for i, c in enumerate(crops)]
        track = self.generated_faces.track(Path("<generated>"), images)
        if opts.paste_region == "face":
            boxes = track.boxes
        else:
            idx = np.union1d(track.layout.mouth_idx, track.layout.lower_face_idx)
            boxes = landmark_boxes(track.landmarks, idx)
        return [None if np.isnan(b).any() else b for b in boxes]


def options_from_mapping(values: Mapping[str, Any]) -> InferenceOptions:
    """:class:`InferenceOptions` from a config mapping; unknown keys are a ValueError naming them."""
    known = {f.name for f in fields(InferenceOptions)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown inference options {unknown}; known: {sorted(known)}")
    return InferenceOptions(**dict(values))


__all__ = ["InferenceOptions", "InferenceResult", "LipSyncPipeline", "audio_windows", "options_from_mapping"]
