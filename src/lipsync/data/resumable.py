"""Data order that survives a restart: a seeded, rank-sharded, endless sample stream with a position.

Training is counted in optimizer steps (the paper: 200k), not epochs, so the train loader is one endless
stream: pass k over the dataset is a permutation seeded by ``(seed, k)``, and rank r of W takes every
W-th index of it. The stream position is the number of samples this rank has consumed; a checkpoint
stores it and a resumed run starts the stream exactly there (mid-"epoch" included).

Why the position is counted by the datamodule and not by the loader: Lightning pre-fetches one batch
ahead, so a loader-side counter is one batch ahead of what the model has seen when a checkpoint is
written. :class:`ResumableDataMixin` counts batches in ``on_before_batch_transfer``, which Lightning
calls once per batch actually handed to ``training_step``.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch.utils.data import Sampler


class ResumableStreamSampler(Sampler[int]):
    """Endless stream of dataset indices: seeded permutation per pass, sharded over ranks.

    Args:
        num_samples: dataset length N.
        seed: base seed of the permutations (pass k uses ``seed + k``).
        rank: this process's rank r in ``[0, world_size)``.
        world_size: W, number of data-parallel processes; rank r takes stream positions r, r+W, ...
        start: samples this rank has already consumed (the resume position).
        shuffle: permute each pass (False: 0..N-1 in order, for validation-like use).
    """

    def __init__(self, num_samples: int, seed: int = 0, rank: int = 0, world_size: int = 1, start: int = 0,
                 shuffle: bool = True) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} must be in [0, world_size={world_size})")
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self.num_samples = num_samples
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start = start
        self.shuffle = shuffle

    def _pass(self, k: int) -> torch.Tensor:
        """The k-th pass over the dataset: a permutation of 0..N-1 seeded by (seed, k)."""
        if not self.shuffle:
            return torch.arange(self.num_samples)
        return torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(self.seed + k))

    def __iter__(self) -> Iterator[int]:
        # Global stream position of this rank's i-th sample: g = i * W + r.
        g = self.start * self.world_size + self.rank
        k = g // self.num_samples
        order = self._pass(k)
        while True:
            if g // self.num_samples != k:  # crossed into the next pass over the dataset
                k = g // self.num_samples
                order = self._pass(k)
            yield int(order[g % self.num_samples])
            g += self.world_size


class ResumableDataMixin:
    """Adds a resumable stream position to a :class:`~lightning.LightningDataModule`.

    The host class sets ``self.batch_size`` and builds its train loader with :meth:`train_sampler`.
    Lightning saves :meth:`state_dict` in every checkpoint and calls :meth:`load_state_dict` before the
    loaders are built, so the resumed stream continues after the last batch the model trained on.
    """

    batch_size: int
    _batches_consumed: int = 0

    def train_sampler(self, num_samples: int, seed: int) -> ResumableStreamSampler:
        """The train stream for this rank, starting after the batches already consumed."""
        trainer = getattr(self, "trainer", None)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        start = self._batches_consumed * self.batch_size
        return ResumableStreamSampler(num_samples, seed, rank, world, start=start)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Count training batches as Lightning hands them to the model (not as the loader prefetches)."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.training:
            self._batches_consumed += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: how many train batches (per rank) the model has consumed."""
        return {"batches_consumed": self._batches_consumed, "batch_size": self.batch_size}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume the stream where the checkpoint left it; the batch size must be unchanged."""
        if state_dict.get("batch_size", self.batch_size) != self.batch_size:
            raise ValueError(f"checkpoint was written with data.batch_size={state_dict['batch_size']}, "
                             f"this run has {self.batch_size}; resume with the same batch size or start "
                             "afresh (ckpt_path=null)")
        self._batches_consumed = int(state_dict["batches_consumed"])

