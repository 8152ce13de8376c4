"""Streams training samples from the shards written by ``python -m lipsync.prepare``.

One sample (the batch contract of :mod:`lipsync.data.batch`, before batching):

- a window of ``num_frames`` consecutive frames drawn from a stored segment (start uniform),
- its masks, computed now from the stored landmarks by the configured :class:`~lipsync.data.masks.MaskSpec`
  (smoothing runs over the whole segment, then the window is taken, as inference smooths a whole video),
- a reference frame from anywhere in the same source video (one of the segment's reference candidates,
  drawn uniformly over all clips of that video at curation time) and its mask,
- per-frame audio-feature windows: the segment's audio through the frozen audio encoder (cached in the
  shards when ``prepare`` was given the encoder, else computed here and optionally cached on disk),
- cached VAE latents of the window when the shards hold them.

Randomness per sample depends only on ``(seed, epoch, sample index)``, so a resumed loader yields exactly
the samples an uninterrupted one would. Resuming mid-epoch uses litdata's ``StreamingDataLoader``
``state_dict``; Lightning saves and restores it in checkpoints by itself (stateful dataloaders).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import lightning as L
import numpy as np
import torch
from litdata import StreamingDataLoader, StreamingDataset
from litdata.streaming.sampler import ChunkedIndex

from lipsync.data import batch as B
from lipsync.data import shards
from lipsync.data.masks import AdaptiveMask, MaskSpec
from lipsync.models.audio import cached_features, frame_windows

AudioEncoder = Callable[[torch.Tensor], torch.Tensor]


def _index(index: Any) -> int:
    return int(index.index if isinstance(index, ChunkedIndex) else index)


class LipSyncClips(StreamingDataset):
    """Training samples from a shard folder (see the module docstring).

    Args:
        input_dir: shard folder (``output/shards`` of ``prepare``); local path or a litdata-supported URL.
        num_frames: frames T per sample.
        mask: the mask variant (``conf/mask``).
        audio_encoder: frozen encoder (waveform -> (1, steps, D)), or a zero-argument factory for one,
            used when the shards hold no cached ``audio_feats``.
        audio_context: m, context frames each side of a frame's audio window (SPEC section 2).
        audio_cache_dir: folder caching features computed here (None: recompute each time).
        use_cached_latents: return stored ``latents``/``masked_latents`` when the shards have them.
        seed: base of the per-sample random choices.
        **kwargs: passed to litdata's ``StreamingDataset`` (``shuffle``, ``drop_last``, ``max_cache_size``).
    """

    def __init__(self, input_dir: str, num_frames: int = 16, mask: MaskSpec | None = None,
                 audio_encoder: AudioEncoder | Callable[[], AudioEncoder] | None = None, audio_context: int = 2,
                 audio_cache_dir: str | None = None, use_cached_latents: bool = True, seed: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(input_dir, seed=seed, **kwargs)
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.num_frames, self.audio_context, self.sample_seed = num_frames, audio_context, seed
        self.mask = mask if mask is not None else AdaptiveMask()
        self._audio_encoder = audio_encoder
        self.audio_cache_dir = audio_cache_dir
        self.use_cached_latents = use_cached_latents

    def __getitem__(self, index: Any) -> dict[str, Any]:
        item = super().__getitem__(index)
        return self.sample(item, np.random.default_rng([self.sample_seed, self.current_epoch, _index(index)]))

    def sample(self, item: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Turn one stored segment into a training sample (random window and reference from ``rng``)."""
        n, t = shards.num_frames(item), self.num_frames
        if n < t:
            raise ValueError(f"segment {item['key']} has {n} frames < num_frames={t}; re-prepare with "
                             f"segment_frames >= {t} or lower num_frames")
        start = int(rng.integers(0, n - t + 1))
        video = _to_tensor(shards.decode_jpegs(item["frames"], item["frame_offsets"], range(start, start + t)))
        h, w = video.shape[-2:]
        layout = shards.layout_of(item)
        mask = torch.from_numpy(self.mask(np.asarray(item["landmarks"]), layout, h, w)[start:start + t])
        j = int(rng.integers(0, len(item["ref_offsets"]) - 1))
        ref = _to_tensor(shards.decode_jpegs(item["ref_frames"], item["ref_offsets"], [j]))[0]
        ref_mask = torch.from_numpy(self.mask(np.asarray(item["ref_landmarks"])[j:j + 1], layout, h, w,
                                              size_from=np.asarray(item["landmarks"]))[0])
        vid, clip, first = item["key"].split("/")
        sample = {B.VIDEO: video, B.MASK: mask, B.MASKED_VIDEO: video * (1 - mask), B.REF: ref, B.REF_MASK: ref_mask,
                  B.AUDIO_FEATS: self.audio_windows(item, start), B.KEY: f"{vid}/{clip}/{int(first) + start:06d}"}
        sample.update(self._cached_latents(item, start))
        return sample

    def audio_windows(self, item: dict[str, Any], start: int) -> torch.Tensor:
        """(T, 2 * (2m + 1), D) audio-feature windows of the frames ``start .. start + T - 1``."""
        if "audio_feats" in item:
            feats = torch.as_tensor(np.asarray(item["audio_feats"]))
        else:
            encoder = self._encoder()
            feats = cached_features(np.asarray(item["audio"]), encoder, self.audio_cache_dir)
        return frame_windows(feats.float(), self.num_frames, self.audio_context, start_frame=start)

    def _encoder(self) -> AudioEncoder:
        if self._audio_encoder is None:
            raise ValueError("the shards hold no cached audio_feats and no audio encoder was given: set "
                             "data.audio_encoder, or prepare with encoders.audio to cache the features")
        if not isinstance(self._audio_encoder, torch.nn.Module):  # a factory (Hydra partial): build once
            self._audio_encoder = self._audio_encoder()
        return self._audio_encoder

    def _cached_latents(self, item: dict[str, Any], start: int) -> dict[str, torch.Tensor]:
        if not self.use_cached_latents or "latents" not in item:
            return {}
        window = slice(start, start + self.num_frames)
        out = {B.LATENTS: torch.as_tensor(np.asarray(item["latents"])[window])}
        if "masked_latents" in item:
            if item["mask_spec"] != repr(self.mask):
                raise ValueError(f"shards cache masked latents made with {item['mask_spec']}, but the mask is "
                                 f"{self.mask!r}: re-prepare with this mask or set data.use_cached_latents=false")
            out[B.MASKED_LATENTS] = torch.as_tensor(np.asarray(item["masked_latents"])[window])
        return out


def _to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [-1, 1]."""
    return B.to_model_range(torch.from_numpy(frames).permute(0, 3, 1, 2))


class LipSyncDataModule(L.LightningDataModule):
    """Train/val loaders over prepared shards (SPEC sections 2-4).

    Args:
        shards: training shard folder (``<prepare output>/shards``).
        val_shards: validation shard folder, or None for no validation loader.
        num_frames: frames T per sample (16 in the paper).
        batch_size: samples per batch (per device).
        num_workers: loader worker processes.
        mask: the mask variant (``conf/mask``); default adaptive.
        audio_encoder: frozen audio encoder or a factory of one (used when features are not cached).
        audio_context: m, context frames each side (10 audio tokens per frame for m = 2).
        audio_cache_dir: where features computed at load time are cached (None: not cached).
        use_cached_latents: pass stored VAE latents on to the batch.
        shuffle: shuffle the training stream (litdata shuffles chunks, then samples within them).
        seed: seed of the shuffle and of the per-sample choices.
    """

    def __init__(self, shards: str, val_shards: str | None = None, num_frames: int = 16, batch_size: int = 1,
                 num_workers: int = 2, mask: MaskSpec | None = None,
                 audio_encoder: AudioEncoder | Callable[[], AudioEncoder] | None = None, audio_context: int = 2,
                 audio_cache_dir: str | None = None, use_cached_latents: bool = True, shuffle: bool = True,
                 seed: int = 0) -> None:
        super().__init__()
        self.shards, self.val_shards = shards, val_shards
        self.num_frames, self.batch_size, self.num_workers = num_frames, batch_size, num_workers
        self.mask, self.audio_encoder, self.audio_context = mask, audio_encoder, audio_context
        self.audio_cache_dir, self.use_cached_latents = audio_cache_dir, use_cached_latents
        self.shuffle, self.seed = shuffle, seed
        self.train_set: LipSyncClips | None = None
        self.val_set: LipSyncClips | None = None

    def dataset(self, folder: str, shuffle: bool, drop_last: bool) -> LipSyncClips:
        """A :class:`LipSyncClips` over ``folder`` with this module's settings."""
        if "://" not in str(folder) and shards.read_shard_meta(os.path.expanduser(folder)) is None:
            raise ValueError(f"no complete shards at {folder} (index.json and {shards.SHARD_META} missing): "
                             "make them with `python -m lipsync.prepare input=VIDEOS output=DIR` and point "
                             "data.shards at DIR/shards")
        return LipSyncClips(str(Path(folder).expanduser()) if "://" not in str(folder) else folder,
                            num_frames=self.num_frames, mask=self.mask, audio_encoder=self.audio_encoder,
                            audio_context=self.audio_context, audio_cache_dir=self.audio_cache_dir,
                            use_cached_latents=self.use_cached_latents, seed=self.seed, shuffle=shuffle,
                            drop_last=drop_last)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None and stage in (None, "fit"):
            self.train_set = self.dataset(self.shards, shuffle=self.shuffle, drop_last=True)
        if self.val_set is None and self.val_shards and stage in (None, "fit", "validate"):
            self.val_set = self.dataset(self.val_shards, shuffle=False, drop_last=False)

    def train_dataloader(self) -> StreamingDataLoader:
        self.setup("fit")
        if len(self.train_set) < self.batch_size:  # drop_last: Lightning would stop at once, "no training batches"
            raise ValueError(f"{self.shards}: {len(self.train_set)} training clip(s) per device, fewer than "
                             f"data.batch_size={self.batch_size}: no full batch; prepare more videos or "
                             "lower data.batch_size")
        return StreamingDataLoader(self.train_set, batch_size=self.batch_size, num_workers=self.num_workers,
                                   drop_last=True, persistent_workers=False)

    def val_dataloader(self) -> StreamingDataLoader | list:
        self.setup("validate")
        if self.val_set is None:
            return []
        return StreamingDataLoader(self.val_set, batch_size=self.batch_size, num_workers=self.num_workers)
