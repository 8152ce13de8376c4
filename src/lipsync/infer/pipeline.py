"""``LipSyncPipeline``: re-render the mouth of a video so it speaks a new audio track (SPEC section 6).

One call runs six numbered phases, each a function that takes what it needs and returns what it made:

1. inputs (:func:`.plan.read_inputs`): probe the video, decode the driving audio twice (its own rate and
   channels for the output, 16 kHz mono for the model), map every output frame to a source frame;
2. faces and 3. plan (:func:`.plan.plan_frames`): every face per source frame in one streaming pass, the
   one to dub chosen per shot (``options.face``, :mod:`.face_choice`), short gaps filled, square crops
   smoothed over time, the training mask in crop pixels, per-frame edit weights
   (face-less stretches and the silence policy fade in and out), the seeded reference frame;
4. audio (:func:`.generate.audio_features`): Whisper features once for the whole track;
5. reference (:func:`.generate.reference_condition`): the ID-Guider once per video;
6. generate (:func:`.generate.render`): per 16-frame segment, crops -> masked-video latents (the net's
   ``clip_conditions``, as in training) -> the guided solver (Euler by default) on Karras sigmas -> decode
   -> cross-fade with the previous segment -> paste back -> write.

Loading and saving live in :mod:`.loading` (on the safe formats of :mod:`.checkpoint`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, Mapping

import torch
from torch import nn

from lipsync.clock import Stopwatch
from lipsync.data.faces import FaceBackend, MediaPipeFaces
from lipsync.data.masks import MaskSpec
from lipsync.infer import loading
from lipsync.infer.generate import Conditions, Model, Sampling, audio_features, reference_condition, render
from lipsync.infer.options import (PAPER_GUIDANCE, InferenceOptions, InferenceResult, guidance_scale,
                                   options_from_mapping, sigma_range, student_levels)
from lipsync.infer.plan import plan_frames, read_inputs
from lipsync.media import MODEL_FPS
from lipsync.models.audio import audio_windows
from lipsync.models.denoiser import Denoiser
from lipsync.prepare.crop import CropSpec
from lipsync.sampling import consistency_sigmas, karras_sigmas
from lipsync.sampling.samplers import CONSISTENCY

log = logging.getLogger(__name__)

# ``generated_faces`` default: a MediaPipe detector for the generated crops (None skips detection)
MEDIAPIPE = "mediapipe"


class LipSyncPipeline:
    """Audio-driven lip sync of a whole video with a trained SayAnything model.

    Args:
        net: the raw network F (``LipSyncNet``).
        vae: the codec (``SVDVAE`` or ``SpaceToDepthVAE``).
        audio_encoder: ``WhisperAudioEncoder`` (16 kHz mono -> 50 steps/s).
        precond: the preconditioning the net was trained with (``SVDPrecond``).
        mask: the training mask (``AdaptiveMask`` ...), applied in crop pixels.
        crop: the training crop (``lipsync.prepare.crop.CropSpec``: resolution, scale, smoothing).
        config: the component configs (``_target_`` nodes), ``preprocess`` (audio_context, model_fps) and
            the recorded ``sampling`` defaults, written by :meth:`save_pretrained`.
        faces: face backend for the source video (default MediaPipe).
        generated_faces: face backend for the generated crops: :data:`MEDIAPIPE` (the default) builds a
            MediaPipe detector; None skips the detection.
        device: where the model runs.
    """

    def __init__(self, net: nn.Module, vae: nn.Module, audio_encoder: nn.Module, precond: Any, mask: MaskSpec,
                 crop: CropSpec, config: Mapping[str, Any], faces: FaceBackend | None = None,
                 generated_faces: FaceBackend | Literal["mediapipe"] | None = MEDIAPIPE,
                 device: str | torch.device = "cpu") -> None:
        loading.check_audio_width(net, audio_encoder)
        self.device = torch.device(device)
        self.net, self.vae = net.eval().to(self.device), vae.eval().to(self.device)
        self.audio_encoder = audio_encoder.eval().to(self.device)
        self.denoiser = Denoiser(self.net, precond)
        self.mask, self.crop, self.config = mask, crop, dict(config)
        pre = self.config.get("preprocess", {})
        self.audio_context = int(pre.get("audio_context", 2))
        self.model_fps = float(pre.get("model_fps", MODEL_FPS))
        self.faces = faces if faces is not None else MediaPipeFaces()
        self.generated_faces = MediaPipeFaces() if generated_faces == MEDIAPIPE else generated_faces

    # --- construction and checkpoints (lipsync.infer.loading) -----------------------------------------
    @classmethod
    def from_config(cls, config: Mapping[str, Any], **kwargs: Any) -> "LipSyncPipeline":
        """Build every component from its ``_target_`` node (random weights for the networks)."""
        return cls(**loading.build_components(config), config=config, **kwargs)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, train_config: str | os.PathLike | None = None,
                        **kwargs: Any) -> "LipSyncPipeline":
        """Load a :meth:`save_pretrained` folder, or convert a training ``.ckpt`` on the fly.

        Raises:
            CheckpointError: missing, unreadable, inconsistent, or unsafe (a pickle that would run code).
        """
        pretrained = loading.read_pretrained(path, train_config)
        pipe = cls.from_config(pretrained.config, **kwargs)
        loading.load_weights(vars(pipe), pretrained)
        return pipe

    def save_pretrained(self, directory: str | os.PathLike, audio_encoder: str = "embed") -> Path:
        """Write ``config.json`` + ``model.safetensors``; :meth:`from_pretrained` reads them back exactly.
        ``audio_encoder="packaged"`` references the packaged Whisper tiny.en instead of embedding it."""
        return loading.save_pretrained(directory, self.config, vars(self), audio_encoder)

    def guidance_scale(self, opts: InferenceOptions) -> float:
        """The CFG scale: the options', else the model's recorded ``cfg_scale``, else the paper's 3.0."""
        return guidance_scale(opts, self.config.get("sampling") or {})

    def sigma_range(self, opts: InferenceOptions) -> tuple[float, float]:
        """(sigma_min, sigma_max) of the schedule: the options', else the model's, else SVD's."""
        return sigma_range(opts, self.config.get("sampling") or {})

    @property
    def model(self) -> Model:
        """The trained parts generation uses."""
        return Model(net=self.net, vae=self.vae, denoiser=self.denoiser, crop=self.crop,
                     audio_context=self.audio_context, model_fps=self.model_fps, device=self.device)

    def sampling(self, opts: InferenceOptions) -> Sampling:
        """The sampler settings of a call: the options over the model's recorded defaults (a student's
        levels for the consistency sampler, Karras sigmas for the solvers)."""
        if opts.sampler == CONSISTENCY:
            levels = student_levels(self.config.get("sampling") or {})
            sigmas = consistency_sigmas(levels, opts.num_steps, device=self.device)
        else:
            sigmas = karras_sigmas(opts.num_steps, *self.sigma_range(opts), opts.rho, device=self.device)
        return Sampling(sigmas=sigmas, guidance_scale=self.guidance_scale(opts),
                        audio_guidance_scale=opts.audio_guidance_scale, seed=opts.seed, sampler=opts.sampler,
                        guidance_interval=opts.guidance_interval)

    # --- the call --------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, video: str | os.PathLike, audio: str | os.PathLike, output: str | os.PathLike,
                 options: InferenceOptions | None = None, **overrides: Any) -> InferenceResult:
        """Dub ``video`` with ``audio`` into ``output`` (mp4, written atomically).

        Raises:
            MediaError: a missing or unreadable file, no video or no audio stream, an empty clip.
        """
        opts, clock = replace(options or InferenceOptions(), **overrides).resolved(), Stopwatch()
        sampling = self.sampling(opts)  # first: a preset this model cannot take fails before any work
        inputs = read_inputs(video, audio, opts.junction)  # 1. inputs
        clock.lap("inputs")
        plan = plan_frames(inputs, self.faces, self.crop, self.mask, opts)  # 2-3. faces, plan
        clock.lap("faces")
        conditions = None
        if plan.editable:
            feats = audio_features(self.audio_encoder, inputs.wave, plan, opts.silence, self.device)  # 4.
            clock.lap("audio")
            conditions = Conditions(audio=feats, reference=reference_condition(self.model, plan))  # 5.
            clock.lap("reference")
        else:
            log.warning("%s: no frame with a face to edit; the video passes through with the new audio",
                        video)
        # the generated crop's own box widens a feathered paste; a Poisson paste keeps to the edit region
        detector = self.generated_faces if opts.detect_generated and opts.paste_blend == "feather" else None
        regions = render(plan, inputs, self.model, conditions, sampling, detector, output,
                         opts)  # 6. generate, paste, write
        clock.lap("generate")
        return InferenceResult(
            output=Path(output), num_frames=plan.num_frames, fps=plan.info.fps,
            source_index=plan.source_index, edit_weight=plan.weights, paste_region=regions, silent=plan.silent,
            reference_frame=plan.reference_source, seconds=clock.total, timings=clock.laps,
            face_decisions=plan.face_decisions,
        )


__all__ = ["PAPER_GUIDANCE", "InferenceOptions", "InferenceResult", "LipSyncPipeline", "audio_windows",
           "options_from_mapping"]
