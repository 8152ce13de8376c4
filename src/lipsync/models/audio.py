"""Audio guidance (SPEC section 2): frozen Whisper encoder features and their per-frame windows.

Time conventions (hidden in Whisper, named here):
- Whisper's log-mel has a hop of 160 samples at 16 kHz (100 frames/s); ``conv2`` has stride 2, so the
  encoder emits one *step* per 320 samples: 50 steps/s. Audio step ``s`` covers ``[s/50, (s+1)/50)`` s.
- Video frame ``t`` at ``fps`` covers ``[t/fps, (t+1)/fps)`` s, i.e. steps ``k*t .. k*t + k - 1`` with
  ``k = 50/fps`` (2 at the model's 25 fps).
- The encoder only accepts exactly 30 s (3000 mel frames, 1500 steps): longer audio is cut into 30 s
  chunks, each zero-padded to 30 s as Whisper itself does (``pad_or_trim``), and the steps are
  concatenated and trimmed to ``ceil(N / 320)``.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from whisper.audio import HOP_LENGTH, N_SAMPLES, SAMPLE_RATE, log_mel_spectrogram
from whisper.model import AudioEncoder, ModelDimensions

from lipsync.media import MODEL_FPS, atomic_path, read_audio
from lipsync.models.weights import state_dict_sha256
from lipsync.models.whisper_convert import ensure_whisper_tiny_en

SAMPLES_PER_STEP = 2 * HOP_LENGTH  # 320: mel hop 160, then conv2 stride 2
STEPS_PER_SECOND = SAMPLE_RATE // SAMPLES_PER_STEP  # 50
CHECKPOINT_KEY = "model.audio_encoder.checkpoint"

# Dimensions of the shipped Whisper weights, so parameter counts need no checkpoint (meta device).
WHISPER_DIMS: dict[str, ModelDimensions] = {
    "tiny.en": ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=384, n_audio_head=6,
                               n_audio_layer=4, n_vocab=51864, n_text_ctx=448, n_text_state=384,
                               n_text_head=6, n_text_layer=4),
}


class WhisperAudioEncoder(nn.Module):
    """Frozen openai-whisper ``AudioEncoder``: 16 kHz mono waveform -> 50 feature steps per second.

    Args:
        encoder: the Whisper encoder (its weights are frozen here).
        layers: which hidden states to return, indexing ``[block_1, ..., block_{L-1}, ln_post(block_L)]``;
            the default ``(-1,)`` is the encoder's own output. Several indices are combined by ``combine``
            (LatentSync-style use of intermediate layers).
        combine: ``"mean"`` keeps width ``D``; ``"concat"`` gives ``len(layers) * D``.
        chunk_batch: how many 30 s chunks go through the encoder at once (bounds memory on long audio).
    """

    def __init__(self, encoder: AudioEncoder, layers: Sequence[int] = (-1,),
                 combine: Literal["mean", "concat"] = "mean", chunk_batch: int = 8) -> None:
        super().__init__()
        n_layer = len(encoder.blocks)
        layers = tuple(int(i) for i in layers)
        if not layers or any(not -n_layer <= i < n_layer for i in layers):
            raise ValueError(f"layers={layers} must be non-empty indices into the encoder's {n_layer} blocks")
        if combine not in ("mean", "concat"):
            raise ValueError(f"combine={combine!r} must be 'mean' or 'concat'")
        self.encoder = encoder.eval().requires_grad_(False)
        self.layers, self.combine, self.chunk_batch = layers, combine, chunk_batch
        self.n_mels = encoder.conv1.in_channels
        self._fingerprint: str | None = None

    @classmethod
    def from_dims(cls, dims: ModelDimensions | dict, **kwargs: Any) -> "WhisperAudioEncoder":
        """Randomly initialised encoder of the given Whisper dims (tiny tests, meta-device counting)."""
        d = dims if isinstance(dims, ModelDimensions) else ModelDimensions(**dims)
        encoder = AudioEncoder(d.n_mels, d.n_audio_ctx, d.n_audio_state, d.n_audio_head, d.n_audio_layer)
        return cls(encoder, **kwargs)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **kwargs: Any) -> "WhisperAudioEncoder":
        """Load the encoder half of an openai-whisper checkpoint (``{"dims", "model_state_dict"}``)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"Whisper checkpoint {path} not found (config key {CHECKPOINT_KEY}); make it with "
                f"`python -m lipsync.models.whisper_convert` (writes assets/whisper-tiny.en.pt)")
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model = cls.from_dims(checkpoint["dims"], **kwargs)
        prefix = "encoder."
        state = {k[len(prefix):]: v for k, v in checkpoint["model_state_dict"].items()
                 if k.startswith(prefix)}
        model.encoder.load_state_dict(state)
        return model

    @classmethod
    def from_packaged(cls, sha256: str | None = None, **kwargs: Any) -> "WhisperAudioEncoder":
        """Whisper tiny.en's encoder from the packaged asset (converted on first use, no download).

        ``sha256`` (:meth:`weights_sha256` of the encoder a model was trained with) pins the weights: a
        pipeline folder that references the asset instead of embedding 32 MB of Whisper refuses to run on
        any other encoder.
        """
        model = cls.from_checkpoint(ensure_whisper_tiny_en(), **kwargs)
        if sha256 is not None and model.weights_sha256() != sha256:
            raise ValueError(f"the packaged Whisper tiny.en encoder has weights {model.weights_sha256()[:12]}..., "
                             f"the model was trained with {sha256[:12]}...: rebuild assets/whisper-tiny.en.pt "
                             "with `python -m lipsync.models.whisper_convert`")
        return model

    def weights_sha256(self) -> str:
        """SHA-256 over the encoder's tensors (sorted names, float32 bytes): the identity of its weights."""
        return state_dict_sha256(self.encoder)

    @property
    def dim(self) -> int:
        """Feature width ``D`` of the output (``n_audio_state``, times ``len(layers)`` for concat)."""
        width = self.encoder.ln_post.normalized_shape[0]
        return width * len(self.layers) if self.combine == "concat" else width

    def train(self, mode: bool = True) -> "WhisperAudioEncoder":
        """Stay in eval mode: the encoder is frozen (SPEC section 2), whatever the parent module does."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, wave: Tensor | np.ndarray) -> Tensor:
        """Encode 16 kHz mono audio.

        Args:
            wave: ``(N,)`` or ``(B, N)`` float waveform at 16 kHz, roughly in [-1, 1].

        Returns:
            ``(B, ceil(N / 320), D)`` features at 50 steps/s (``B = 1`` for a 1-D input).
        """
        wave = self._check_wave(wave)
        batch, n = wave.shape
        n_chunks = math.ceil(n / N_SAMPLES)
        # Whisper's encoder sees exactly 30 s: zero-pad the tail chunk as whisper.pad_or_trim does.
        chunks = F.pad(wave, (0, n_chunks * N_SAMPLES - n)).reshape(batch * n_chunks, N_SAMPLES)
        # One log-mel call per chunk: Whisper floors each spectrogram at (its own max - 8) in log10 units.
        mels = torch.stack([log_mel_spectrogram(c, n_mels=self.n_mels) for c in chunks])
        feats = torch.cat([self._encode_mel(m) for m in mels.split(self.chunk_batch)])
        steps = math.ceil(n / SAMPLES_PER_STEP)
        return feats.reshape(batch, -1, feats.shape[-1])[:, :steps]

    def _check_wave(self, wave: Tensor | np.ndarray) -> Tensor:
        wave = torch.as_tensor(wave)
        if wave.ndim not in (1, 2) or wave.shape[-1] == 0 or not wave.is_floating_point():
            raise ValueError(f"wave must be a float (N,) or (B, N) 16 kHz waveform with N > 0, "
                             f"got {wave.dtype} {tuple(wave.shape)}")
        wave = wave if wave.ndim == 2 else wave[None]
        return wave.to(device=self.encoder.conv1.weight.device, dtype=torch.float32)

    def _encode_mel(self, mel: Tensor) -> Tensor:
        """``(C, n_mels, 3000)`` log-mel -> ``(C, 1500, D)``: Whisper's ``AudioEncoder.forward``, keeping
        the hidden states named in ``layers``."""
        enc = self.encoder
        x = F.gelu(enc.conv2(F.gelu(enc.conv1(mel)))).permute(0, 2, 1)
        x = x + enc.positional_embedding.to(x.dtype)
        hidden = []
        for block in enc.blocks:
            x = block(x)
            hidden.append(x)
        hidden[-1] = enc.ln_post(x)
        picked = [hidden[i] for i in self.layers]
        if len(picked) == 1:
            return picked[0]
        return torch.cat(picked, dim=-1) if self.combine == "concat" else torch.stack(picked).mean(0)

    def fingerprint(self) -> str:
        """Hash of the weights and layer choice: features cached under one encoder never serve another."""
        if self._fingerprint is None:
            h = hashlib.sha256(repr((self.layers, self.combine)).encode())
            for name, tensor in self.encoder.state_dict().items():
                h.update(name.encode())
                h.update(tensor.detach().float().cpu().numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint


def audio_windows(feats: Tensor, frames: np.ndarray | Sequence[int], fps: float, m: int = 2,
                  model_fps: float = MODEL_FPS) -> Tensor:
    """Per-video-frame windows of audio steps, video at any rate (SPEC section 2: frame t hears t-m .. t+m).

    The model was trained on ``model_fps`` frames that each see the ``k (2m+1)`` steps (``k = 50 /
    model_fps``; 10 steps = 200 ms at 25 fps) starting at step ``k (f - m)``. A frame ``f`` of a
    ``fps`` video, at time ``f / fps``, gets the same span starting at step ``round(50 f / fps) - k m``,
    so 29.97 fps video reads exactly the audio under each of its frames; at ``fps = model_fps`` this is
    ``k (f - m)``. Steps outside ``[0, S)`` are zeros (the video's ends when ``feats`` covers the whole
    video; the clip's ends when it covers only the clip).

    Args:
        feats: ``(S, D)`` or ``(B, S, D)`` encoder steps at 50 steps/s, step 0 = the first frame's time.
        frames: ``(T,)`` video frame indices.
        fps: the video's frame rate.
        m: context frames on each side.
        model_fps: the rate the model was trained at; ``50 / model_fps`` must be a whole number.

    Returns:
        ``(T, k*(2m+1), D)``, or ``(B, T, k*(2m+1), D)`` for batched input (``(T, 10, D)`` by default).
    """
    k = STEPS_PER_SECOND / model_fps
    if k != int(k) or k < 1:
        raise ValueError(f"fps={model_fps}: {STEPS_PER_SECOND} audio steps/s do not split into whole steps "
                         f"per frame; resample the video to {MODEL_FPS} fps")
    if m < 0:
        raise ValueError(f"need m >= 0, got {m}")
    if feats.ndim not in (2, 3):
        raise ValueError(f"feats must be (S, D) or (B, S, D), got {tuple(feats.shape)}")
    k = int(k)
    x = feats if feats.ndim == 3 else feats[None]
    num_steps = x.shape[1]
    steps_at = np.asarray(frames, dtype=np.float64) * STEPS_PER_SECOND / float(fps)  # the frame's time, in steps
    first = np.rint(steps_at).astype(np.int64) - k * m
    steps = torch.as_tensor(first[:, None] + np.arange(k * (2 * m + 1))[None, :], device=x.device)  # (T, A)
    inside = (steps >= 0) & (steps < num_steps)
    if num_steps == 0:
        out = x.new_zeros(x.shape[0], *steps.shape, x.shape[2])
    else:
        out = x[:, steps.clamp(0, num_steps - 1)] * inside[None, :, :, None].to(x.dtype)
    return out if feats.ndim == 3 else out[0]


def frame_windows(feats: Tensor, num_frames: int, m: int = 2, start_frame: int = 0,
                  fps: float = MODEL_FPS) -> Tensor:
    """:func:`audio_windows` of ``num_frames`` consecutive frames from ``start_frame``, video at the model's
    own rate (training clips): frame ``f`` holds steps ``k*(f - m) .. k*(f + m) + k - 1``, ``k = 50/fps``."""
    if m < 0 or num_frames < 0 or start_frame < 0:
        raise ValueError(f"need m >= 0, num_frames >= 0, start_frame >= 0; "
                         f"got {m}, {num_frames}, {start_frame}")
    return audio_windows(feats, np.arange(start_frame, start_frame + num_frames), fps, m, model_fps=fps)


def cached_features(wave: np.ndarray, encoder: WhisperAudioEncoder,
                    cache_dir: str | os.PathLike | None = None) -> Tensor:
    """Encoder steps ``(ceil(N/320), D)`` of a 16 kHz mono ``wave`` ``(N,)``, cached on disk if asked.

    The cache file is named by the SHA-256 of the audio samples and the encoder's fingerprint, so it is
    reused for identical audio and the same weights only. Files are written atomically.
    """
    if cache_dir is None:
        return encoder(wave)[0].cpu()
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    key = hashlib.sha256(wave.tobytes() + encoder.fingerprint().encode()).hexdigest()[:32]
    path = Path(cache_dir) / f"{key}.pt"
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    feats = encoder(wave)[0].cpu()
    with atomic_path(path) as tmp:
        torch.save(feats, tmp)
    return feats


@functools.lru_cache(maxsize=1)
def default_encoder() -> WhisperAudioEncoder:
    """Whisper tiny.en's encoder from ``assets/whisper-tiny.en.pt`` (converted from the CT2 asset once)."""
    return WhisperAudioEncoder.from_checkpoint(ensure_whisper_tiny_en())


def encode_file(path: str | os.PathLike, encoder: WhisperAudioEncoder | None = None,
                cache_dir: str | os.PathLike | None = None) -> Tensor:
    """Encoder steps ``(steps, D)`` of a media file's first audio track (decoded to 16 kHz mono).

    ``encoder`` defaults to :func:`default_encoder` (Whisper tiny.en, D = 384).
    """
    wave, _ = read_audio(path, sample_rate=SAMPLE_RATE, mono=True)
    return cached_features(wave, encoder if encoder is not None else default_encoder(), cache_dir)
