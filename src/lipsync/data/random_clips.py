"""Random clips that honour the batch contract: the ``data=random`` option for smoke tests and benchmarks.

Every clip is a pure function of ``(seed, index)``: smooth random colour fields drifting over the frames,
a fixed lower-face rectangle as the mask, a frame of the clip as the reference, and Gaussian audio
features. Nothing here is meant to be learnable beyond memorisation; it exercises shapes, loaders,
sharding and resume without any files on disk. With ``cached_latents`` a clip also carries Gaussian
``latents``/``masked_latents`` at the VAE's latent size, as shards with prepare's cached VAE latents do,
so a benchmark times the training step that skips the frozen VAE.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lipsync.data.batch import (AUDIO_FEATS, KEY, LATENTS, MASK, MASKED_LATENTS, MASKED_VIDEO, REF, REF_MASK,
                                VIDEO)
from lipsync.data.resumable import ResumableDataMixin

# The edit rectangle (x0, y0, x1, y1) as fractions of the frame: lower face, cheek to cheek.
MASK_BOX = (0.2, 0.5, 0.8, 0.95)


def box_mask(num_frames: int, size: int, box: tuple[float, float, float, float] = MASK_BOX) -> Tensor:
    """(T, 1, size, size) float mask, 1 inside ``box`` (fractions of the frame), 0 outside."""
    x0, y0, x1, y1 = (round(v * size) for v in box)
    mask = torch.zeros(num_frames, 1, size, size)
    mask[..., y0:y1, x0:x1] = 1.0
    return mask


class RandomClips(Dataset[dict[str, Any]]):
    """A deterministic dataset of random clips, one batch-contract sample per index.

    Args:
        num_clips: dataset length.
        num_frames: T, frames per clip.
        size: H = W in pixels.
        audio_tokens: A, audio tokens per frame (2 * (2m + 1) = 10 for m = 2).
        audio_dim: D, audio feature width (384 for Whisper tiny).
        seed: base seed; sample i is generated from ``seed * 1_000_003 + i``.
        name: prefix of the sample keys.
        latent_shape: (C, downsample factor) of the VAE to stand in for: each clip then carries
            ``latents`` and ``masked_latents`` (T, C, size / factor, size / factor); None = pixels only.
    """

    def __init__(self, num_clips: int, num_frames: int, size: int, audio_tokens: int = 10,
                 audio_dim: int = 384, seed: int = 0, name: str = "random",
                 latent_shape: tuple[int, int] | None = None) -> None:
        if min(num_clips, num_frames, size, audio_tokens, audio_dim) < 1:
            raise ValueError("num_clips, num_frames, size, audio_tokens and audio_dim must all be >= 1, got "
                             f"{(num_clips, num_frames, size, audio_tokens, audio_dim)}")
        if latent_shape is not None and (min(latent_shape) < 1 or size % latent_shape[1]):
            raise ValueError(f"latent_shape (channels, factor) must be >= 1 and divide size {size} by the "
                             f"factor; got {latent_shape}")
        self.num_clips, self.num_frames, self.size = num_clips, num_frames, size
        self.audio_tokens, self.audio_dim = audio_tokens, audio_dim
        self.seed, self.name = seed, name
        self.latent_shape = latent_shape
        self.mask = box_mask(num_frames, size)

    def __len__(self) -> int:
        return self.num_clips

    def _video(self, g: torch.Generator) -> Tensor:
        """(T, 3, H, W) in [-1, 1]: a smooth colour field plus a slow per-frame drift."""
        low = max(self.size // 8, 2)
        base = torch.randn(1, 3, low, low, generator=g)
        drift = 0.3 * torch.randn(self.num_frames, 3, low, low, generator=g).cumsum(0)
        frames = F.interpolate(base + drift, size=(self.size, self.size), mode="bilinear")
        return torch.tanh(frames)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_clips:
            raise IndexError(f"clip index {index} out of range [0, {self.num_clips})")
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        video = self._video(g)
        ref_frame = int(torch.randint(self.num_frames, (1,), generator=g))
        sample = {
            VIDEO: video,
            MASK: self.mask,
            MASKED_VIDEO: video * (1.0 - self.mask),
            REF: video[ref_frame],
            REF_MASK: self.mask[ref_frame],
            AUDIO_FEATS: torch.randn(self.num_frames, self.audio_tokens, self.audio_dim, generator=g),
            KEY: f"{self.name}/{index:06d}/0",
        }
        if self.latent_shape is not None:
            channels, factor = self.latent_shape
            shape = (self.num_frames, channels, self.size // factor, self.size // factor)
            sample[LATENTS] = torch.randn(shape, generator=g)
            sample[MASKED_LATENTS] = torch.randn(shape, generator=g)
        return sample


class RandomClipDataModule(ResumableDataMixin, L.LightningDataModule):
    """Random clips for training (endless, resumable, rank-sharded stream) and a fixed validation set.

    Args:
        num_clips: training clips (the stream cycles through seeded permutations of them).
        val_clips: validation clips (a different seed; always the same ones, in order).
        num_frames: T.
        size: H = W.
        audio_tokens: A.
        audio_dim: D.
        batch_size: clips per batch per process.
        num_workers: DataLoader workers.
        seed: data seed (independent of the training seed).
        cached_latents: clips also carry VAE-sized ``latents``/``masked_latents`` (what shards with
            cached latents give), so the training step skips the VAE; ``latent_channels`` and
            ``latent_downsample`` give their size.
    """

    def __init__(self, num_clips: int = 64, val_clips: int = 2, num_frames: int = 4, size: int = 32,
                 audio_tokens: int = 10, audio_dim: int = 384, batch_size: int = 2, num_workers: int = 0,
                 seed: int = 0, cached_latents: bool = False, latent_channels: int = 4,
                 latent_downsample: int = 8) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.batch_size = batch_size
        self.num_workers = num_workers
        shape = dict(num_frames=num_frames, size=size, audio_tokens=audio_tokens, audio_dim=audio_dim,
                     latent_shape=(latent_channels, latent_downsample) if cached_latents else None)
        self.train_set = RandomClips(num_clips, seed=seed, name="random-train", **shape)
        self.val_set = RandomClips(val_clips, seed=seed + 1, name="random-val", **shape)

    def train_dataloader(self) -> DataLoader:
        sampler = self.train_sampler(len(self.train_set), seed=self.hparams.seed)
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=sampler,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size, shuffle=False, num_workers=0)
