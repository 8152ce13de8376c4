"""SyncNet v2 (Chung & Zisserman 2016, joonson/syncnet_python) and its offset search: Sync-C and Sync-D
for ``evaluate``, the audio-visual sync filter for ``prepare``.

Conventions kept from syncnet_python so that our numbers are comparable with published ones:

- video at 25 fps; the face crop of :func:`syncnet_crop` (detector box widened by ``crop_scale`` = 0.4,
  shifted down towards the mouth, padded with grey 110), resized to 224x224, **BGR**, float in [0, 255];
- audio at 16 kHz, scaled to the int16 range (syncnet_python reads the wav as int16), 13 MFCCs per
  10 ms (python_speech_features defaults: 25 ms window, 26 filters, log-energy as coefficient 0);
- one feature per 5-frame window: video frames ``i..i+4`` pair with MFCC steps ``4i..4i+19`` (the
  same 200 ms);
- offset search over ``-vshift..+vshift`` frames (vshift = 15): the distance between each video feature
  and the audio feature ``k`` frames away (zero vector beyond the ends, as syncnet_python pads), averaged
  over the video; ``Sync-D`` = the smallest mean distance, ``Sync-C`` = median - smallest, and the
  offset is where the smallest lies. ``offset > 0`` means the sound comes ``offset`` frames *before* the
  mouth shows it.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator, Protocol, TypeVar

import cv2
import numpy as np
import python_speech_features
import torch
from scipy.signal import medfilt
from torch import nn

from lipsync.models.weights import require_file

SYNCNET_FPS = 25
SYNCNET_RATE = 16_000
WINDOW_FRAMES = 5  # video frames per SyncNet sample (200 ms)
MFCC_PER_FRAME = 4  # 100 MFCC steps/s over 25 frames/s
WINDOW_MFCC = WINDOW_FRAMES * MFCC_PER_FRAME
T = TypeVar("T")


class SyncNetLike(Protocol):
    """What the offset search needs: two embedding towers into the same space."""

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 5, H, W) BGR in [0, 255] -> (B, D)."""

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 13, 20) MFCC -> (B, D)."""


def _conv_bn_relu(conv: nn.Module, bn: type[nn.Module], channels: int) -> list[nn.Module]:
    return [conv, bn(channels), nn.ReLU(inplace=True)]


class SyncNetV2(nn.Module):
    """SyncNet v2 (the ``S`` model of joonson/syncnet_python) with the same module names and indices.

    The attribute names and ``nn.Sequential`` positions reproduce the keys of ``syncnet_v2.model``
    (``netcnnaud.0.weight`` ... ``netfclip.3.bias``) so that file loads strictly. Parameter-free layers
    that look pointless (a 1x1 max-pool) stay because removing them would renumber the keys.
    """

    def __init__(self, embed_dim: int = 1024) -> None:
        super().__init__()
        p1 = (1, 1)
        self.netcnnaud = nn.Sequential(  # MFCC (B, 1, 13, 20) -> (B, 512, 1, 1)
            *_conv_bn_relu(nn.Conv2d(1, 64, 3, padding=p1), nn.BatchNorm2d, 64),
            nn.MaxPool2d(kernel_size=1, stride=1),
            *_conv_bn_relu(nn.Conv2d(64, 192, 3, padding=p1), nn.BatchNorm2d, 192),
            nn.MaxPool2d(kernel_size=3, stride=(1, 2)),
            *_conv_bn_relu(nn.Conv2d(192, 384, 3, padding=p1), nn.BatchNorm2d, 384),
            *_conv_bn_relu(nn.Conv2d(384, 256, 3, padding=p1), nn.BatchNorm2d, 256),
            *_conv_bn_relu(nn.Conv2d(256, 256, 3, padding=p1), nn.BatchNorm2d, 256),
            nn.MaxPool2d(kernel_size=3, stride=2),
            *_conv_bn_relu(nn.Conv2d(256, 512, (5, 4)), nn.BatchNorm2d, 512),
        )
        self.netfcaud = self._head(embed_dim)
        self.netfclip = self._head(embed_dim)
        self.netcnnlip = nn.Sequential(  # frames (B, 3, 5, 224, 224) -> (B, 512, 1, 1, 1)
            *_conv_bn_relu(nn.Conv3d(3, 96, (5, 7, 7), stride=(1, 2, 2)), nn.BatchNorm3d, 96),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            *_conv_bn_relu(nn.Conv3d(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),
                           nn.BatchNorm3d, 256),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            *_conv_bn_relu(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d, 256),
            *_conv_bn_relu(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d, 256),
            *_conv_bn_relu(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d, 256),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            *_conv_bn_relu(nn.Conv3d(256, 512, (1, 6, 6)), nn.BatchNorm3d, 512),
        )

    @staticmethod
    def _head(embed_dim: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed_dim))

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """MFCC windows (B, 1, 13, 20) -> audio embeddings (B, embed_dim)."""
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """Face windows (B, 3, 5, 224, 224), BGR in [0, 255] -> video embeddings (B, embed_dim)."""
        return self.netfclip(self.netcnnlip(x).flatten(1))


def load_syncnet(path: str | os.PathLike | None, config_key: str = "syncnet.weights") -> SyncNetV2:
    """Load ``syncnet_v2.model`` (a state dict in syncnet_python's key layout), in eval mode.

    Raises:
        MissingWeights: the file is absent (message names ``config_key``).
        ValueError: the file is not a SyncNet v2 state dict (lists the first mismatching keys).
    """
    path = require_file(path, config_key, "SyncNet v2")
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = SyncNetV2()
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path} is not a SyncNet v2 state dict: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    return net.eval()


def mfcc(audio: np.ndarray, sample_rate: int = SYNCNET_RATE) -> np.ndarray:
    """13 MFCCs at 100 Hz as syncnet_python computes them: (samples,) float in [-1, 1] -> (13, M).

    The waveform is scaled to the int16 range first because the log-energy coefficient depends on
    the absolute level and SyncNet was trained on int16 wav samples.
    """
    if sample_rate != SYNCNET_RATE:
        raise ValueError(f"SyncNet needs {SYNCNET_RATE} Hz audio, got {sample_rate} Hz: resample first")
    int16_scale = np.asarray(audio, np.float64) * 32768.0
    return python_speech_features.mfcc(int16_scale, sample_rate).T.astype(np.float32)


def syncnet_crop(frame: np.ndarray, box: np.ndarray, crop_scale: float = 0.4, size: int = 224) -> np.ndarray:
    """The face crop SyncNet was trained on, from a face box (x0, y0, x1, y1): (H, W, 3) -> (size, size, 3).

    syncnet_python's ``crop_video``: half-size ``s = max(w, h) / 2``; the crop spans ``s (1 + crop_scale)``
    either side of the box centre horizontally and ``[cy - s, cy + s (1 + 2 crop_scale)]`` vertically
    (the mouth sits in its lower half); pixels outside the frame are grey 110.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    s = max(x1 - x0, y1 - y0) / 2
    pad = int(s * (1 + 2 * crop_scale))
    padded = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(110, 110, 110))
    cy, cx = (y0 + y1) / 2 + pad, (x0 + x1) / 2 + pad
    rows = slice(int(cy - s), int(cy + s * (1 + 2 * crop_scale)))
    cols = slice(int(cx - s * (1 + crop_scale)), int(cx + s * (1 + crop_scale)))
    face = padded[rows, cols]
    return cv2.resize(face, (size, size), interpolation=cv2.INTER_LINEAR)


def smooth_boxes(boxes: np.ndarray, kernel: int = 13) -> np.ndarray:
    """Median-filter box centre and size over time, as syncnet_python does: (N, 4) -> (N, 4)."""
    if len(boxes) < 3:
        return boxes
    kernel = min(kernel, len(boxes) - (1 - len(boxes) % 2))  # medfilt needs an odd kernel <= N
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    half = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2
    cx, cy, half = (medfilt(v, kernel) for v in (cx, cy, half))
    return np.stack([cx - half, cy - half, cx + half, cy + half], axis=1)


@dataclass(frozen=True)
class SyncResult:
    """Outcome of the offset search for one video.

    Attributes:
        offset: frames by which the audio leads the video at the best match (syncnet_python's "AV offset").
        sync_c: confidence, median minus minimum of the mean distance curve (Sync-C).
        sync_d: the minimum mean distance (Sync-D).
        dists: mean distance per candidate shift, index ``k`` <-> offset ``vshift - k``, (2 vshift + 1,).
    """

    offset: int
    sync_c: float
    sync_d: float
    dists: np.ndarray

    @property
    def vshift(self) -> int:
        return (len(self.dists) - 1) // 2

    def confidence_at(self, offset: int) -> float:
        """Median minus the mean distance at a given offset (``confidence_at(0)``: as if in sync)."""
        return float(np.median(self.dists) - self.dists[self.vshift - offset])


def av_offset(video_feats: torch.Tensor, audio_feats: torch.Tensor, vshift: int = 15) -> SyncResult:
    """Offset search of syncnet_python's ``calc_pdist``: (N, D) video and (N, D) audio embeddings.

    ``dists[i, k] = || v_i - a_(i + k - vshift) ||`` with zero audio vectors beyond the ends.
    """
    if video_feats.shape != audio_feats.shape:
        raise ValueError(f"video features {tuple(video_feats.shape)} and audio features "
                         f"{tuple(audio_feats.shape)} must have the same shape")
    n = len(video_feats)
    padded = torch.nn.functional.pad(audio_feats, (0, 0, vshift, vshift))
    windows = padded.unfold(0, 2 * vshift + 1, 1)[:n]  # (N, D, 2 vshift + 1)
    # + 1e-6: torch's pairwise_distance eps, which syncnet_python's distances include
    dists = torch.linalg.vector_norm(video_feats[:, :, None] - windows + 1e-6, dim=1)  # (N, 2 vshift + 1)
    mean = dists.mean(0)
    k = int(mean.argmin())
    return SyncResult(offset=vshift - k, sync_c=float(mean.median() - mean[k]), sync_d=float(mean[k]),
                      dists=mean.numpy())


def resample_frames(frames: Iterable[T], fps: float, target_fps: float = SYNCNET_FPS) -> Iterator[T]:
    """Nearest-in-time frames at ``target_fps`` (SyncNet is trained at 25 fps): streams, no buffering."""
    if abs(fps - target_fps) < 1e-3:
        yield from frames
        return
    next_out = 0
    for i, frame in enumerate(frames):
        # output frame k shows time k / target_fps; source frame i covers [i - 0.5, i + 0.5) / fps
        while next_out / target_fps < (i + 0.5) / fps:
            yield frame
            next_out += 1


def sliding_windows(frames: Iterable[np.ndarray], size: int, stride: int = 1) -> Iterator[np.ndarray]:
    """Stack consecutive frames into windows ``(size, ...)`` every ``stride`` frames (streaming)."""
    buf: deque[np.ndarray] = deque(maxlen=size)
    for i, frame in enumerate(frames):
        buf.append(frame)
        if len(buf) == size and (i + 1 - size) % stride == 0:
            yield np.stack(buf)


class SyncNetScorer:
    """Sync-C / Sync-D of a face-crop stream against its audio with any :class:`SyncNetLike` net.

    Args:
        net: SyncNet v2 (or a smaller net of the same interface, as the tests train).
        vshift: largest offset searched, in frames (syncnet_python: 15).
        batch_size: windows per forward pass.
        device: where the net runs.
    """

    def __init__(self, net: nn.Module, vshift: int = 15, batch_size: int = 20, device: str = "cpu") -> None:
        self.net = net.to(device).eval()
        self.vshift, self.batch_size, self.device = vshift, batch_size, device

    @torch.no_grad()
    def video_features(self, crops: Iterable[np.ndarray], limit: int | None = None) -> torch.Tensor:
        """RGB uint8 crops (H, W, 3) at 25 fps -> one embedding per 5-frame window, (N - 4, D)."""
        feats, batch = [], []
        for i, window in enumerate(sliding_windows(crops, WINDOW_FRAMES)):
            if limit is not None and i >= limit:
                break
            batch.append(window[..., ::-1])  # RGB -> BGR, as cv2 read them in syncnet_python
            if len(batch) == self.batch_size:
                feats.append(self._lip(batch))
                batch = []
        if batch:
            feats.append(self._lip(batch))
        if not feats:
            raise ValueError(f"SyncNet needs at least {WINDOW_FRAMES} frames, got fewer")
        return torch.cat(feats)

    def _lip(self, windows: list[np.ndarray]) -> torch.Tensor:
        x = torch.from_numpy(np.stack(windows).astype(np.float32)).permute(0, 4, 1, 2, 3)  # (B, 3, 5, H, W)
        return self.net.forward_lip(x.to(self.device)).cpu()

    @torch.no_grad()
    def audio_features(self, audio: np.ndarray, num_windows: int) -> torch.Tensor:
        """16 kHz mono audio -> one embedding per 5-frame window, (num_windows, D)."""
        cc = torch.from_numpy(mfcc(audio))  # (13, M)
        needed = MFCC_PER_FRAME * (num_windows - 1) + WINDOW_MFCC
        if cc.shape[1] < needed:
            raise ValueError(f"audio gives {cc.shape[1]} MFCC steps; {num_windows} windows need {needed}")
        steps = cc.unfold(1, WINDOW_MFCC, MFCC_PER_FRAME)[:, :num_windows]  # (13, N, 20)
        windows = steps.permute(1, 0, 2)[:, None]  # (N, 1, 13, 20)
        out = [self.net.forward_aud(w.to(self.device)).cpu() for w in windows.split(self.batch_size)]
        return torch.cat(out)

    def score(self, crops: Iterable[np.ndarray], audio: np.ndarray) -> SyncResult:
        """Offset search over a whole video: crops at 25 fps (RGB uint8) and its 16 kHz mono audio."""
        # syncnet_python scores min(frames, whole 40 ms audio frames) - 5 windows (one fewer than fit);
        # keeping its count keeps Sync-C comparable with published numbers.
        audio_frames = len(audio) // (SYNCNET_RATE // SYNCNET_FPS)
        video = self.video_features(crops, limit=audio_frames - WINDOW_FRAMES + 1)[:-1]
        if len(video) == 0:
            raise ValueError(f"SyncNet needs at least {WINDOW_FRAMES + 1} frames of video and audio")
        return av_offset(video, self.audio_features(audio, len(video)), self.vshift)
