"""What the demo's stages hand on: one variant's model scored, and the shipped model scored.

Each result keeps, beside what report.json records (:meth:`as_json`), what the later stages still need:
the dubbed videos (the pictures, the own model's scores on the shipped model's subset) and the model folder
(the own model's quality stage).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lipsync.demo.dubbing import Dub, PairScore, summarize


def on_every_pair(pairs_scored: int, seconds: float | None, heldout_pairs: int) -> bool:
    """Whether the shipped model was scored on every held-out pair, whole clips (then the own model's
    whole-clip row already compares with it: no separate row on its subset)."""
    return pairs_scored == heldout_pairs and seconds is None


@dataclass
class VariantResult:
    """One variant's model dubbed on every held-out pair with another clip's speech, and scored."""

    guidance: float  # classifier-free guidance scale it was sampled with
    overrides: list[str]  # the `lipsync.train` overrides of the run it was trained in
    trained_as: str  # that run's variant (its own name, or its `same_training_as`)
    steps: int  # optimizer steps the run's checkpoint holds
    pairs: list[PairScore]
    done: list[Dub] = field(repr=False)  # the dubbed videos
    model: Path  # its pipeline folder
    quality: dict | None = None  # self-reconstruction quality (the own model, ``full``, only)
    mask: str | None = None  # the own model's mask, as repr
    region: str | None = None  # the own model's :func:`lipsync.evaluate.quality.region_key`
    on_shipped_pairs: dict | None = None  # the own model's summary on the shipped model's pairs and frames

    @property
    def summary(self) -> dict[str, float]:
        """Sync, leak and copy-input sync over its pairs (:func:`lipsync.demo.dubbing.summarize`)."""
        return summarize(self.pairs)

    def as_json(self) -> dict[str, Any]:
        """The report.json entry (the own model's extra fields only when set)."""
        extra = {"quality": self.quality, "mask": self.mask, "region": self.region,
                 "on_shipped_pairs": self.on_shipped_pairs}
        return {"guidance": self.guidance, "overrides": self.overrides, "trained_as": self.trained_as,
                "steps": self.steps, "summary": self.summary, "pairs": [asdict(s) for s in self.pairs],
                **{k: v for k, v in extra.items() if v is not None}}


@dataclass
class ShippedResult:
    """The shipped model dubbed on the first held-out pairs (and seconds), and its self-reconstructions."""

    model: str  # its pipeline folder
    guidance: float  # the guidance scale its folder records for the dubs' options
    pairs_scored: int  # the first N held-out pairs
    seconds: float | None  # the first seconds of each driving speech (None: all of it)
    mask: str  # its mask, as repr
    region: str  # its :func:`lipsync.evaluate.quality.region_key`
    ceilings: dict[str, dict]  # the resolution ceilings in its mask rectangles, per resolution
    frames: list[int]  # frames of each dubbed video
    resolution: int  # its crop side in pixels
    pairs: list[PairScore]
    quality: dict  # self-reconstruction quality
    done: list[Dub] = field(repr=False)  # the dubbed videos

    @property
    def summary(self) -> dict[str, float]:
        """Sync, leak and copy-input sync over its pairs (:func:`lipsync.demo.dubbing.summarize`)."""
        return summarize(self.pairs)

    def as_json(self) -> dict[str, Any]:
        """The report.json entry ``shipped``."""
        return {"model": self.model, "guidance": self.guidance, "pairs_scored": self.pairs_scored,
                "seconds": self.seconds, "mask": self.mask, "region": self.region, "ceilings": self.ceilings,
                "frames": self.frames, "resolution": self.resolution, "summary": self.summary,
                "pairs": [asdict(s) for s in self.pairs], "quality": self.quality}
