"""Self-reconstruction quality of a set of videos and the resolution ceilings it is read against.

:class:`Quality` scores dubs of fixed source videos with :mod:`lipsync.evaluate.reconstruction` (SSIM and
PSNR inside the mask at frame resolution, FID with the shipped Inception over the crop squares), and the
*ceiling* of an ``r``-px model: the source crop resized to ``r`` px and back, pasted and written to H.264
as a dub is. Every row is scored against the same source frames, so their FID features are extracted once,
by whichever row is scored first; a ceiling depends only on the crop's framing and the mask
(:func:`region_key`), so it is scored once per framing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from torchmetrics.image.fid import FrechetInceptionDistance

from lipsync import media
from lipsync.data.faces import FaceBackend
from lipsync.data.masks import MaskSpec
from lipsync.evaluate.reconstruction import (EditRegion, ReconstructionScorer, edit_region, read_first,
                                             resolution_ceiling, summarize)
from lipsync.infer.options import InferenceOptions
from lipsync.media import MODEL_FPS
from lipsync.prepare.crop import CropSpec


def region_key(crop: CropSpec, mask: MaskSpec) -> str:
    """What a resolution ceiling depends on, as a string a report keeps: the crop's framing (its resolution
    aside, which a ceiling sets) and the mask's class and settings (masks are plain classes, compared by
    their attributes)."""
    return json.dumps({"crop": asdict(replace(crop, resolution=0)), "mask": type(mask).__qualname__,
                       "settings": vars(mask)}, sort_keys=True, default=repr)


class Quality:
    """Self-reconstruction quality of dubs of ``videos`` and the ceilings of ``resolutions``-px models.

    Args:
        videos: the source videos; a dub of each with its own speech is scored against it.
        faces: the face backend that finds the crop squares and mask rectangles on the sources.
        options: the dubs' inference options: a ceiling is pasted (``paste_blend``) and written (``crf``)
            with them, as the dubs were.
        resolutions: the ``r`` of the ceilings :meth:`ceilings` scores.
        seconds: the first seconds of each video scored (None: whole clips).
        fid: the FID metric (its source side is extracted once and kept); None leaves FID out.
        fid_stride: every ``fid_stride``-th frame goes into FID.
    """

    def __init__(self, videos: Sequence[Path], faces: FaceBackend, options: InferenceOptions,
                 resolutions: Sequence[int] = (), seconds: float | None = None,
                 fid: FrechetInceptionDistance | None = None, fid_stride: int = 1) -> None:
        self.videos, self.faces, self.options = list(videos), faces, options
        self.resolutions = [int(r) for r in resolutions]
        self.frames = None if seconds is None else int(round(float(seconds) * MODEL_FPS))
        if fid is not None:
            fid.reset_real_features = False  # the source side is the same for every row: extracted once
        self.scorer = ReconstructionScorer(fid, int(fid_stride))
        self.sources = {v: read_first(v, self.frames) for v in self.videos}
        self._squares: dict[Path, np.ndarray] = {}  # FID's crop squares: the first row's, kept for every row
        self._real_done = False  # the source side of FID extracted (by whichever row is scored first)
        self._ceilings: dict[str, dict[str, dict]] = {}  # per region_key

    def region(self, video: Path, crop: CropSpec, mask: MaskSpec) -> EditRegion:
        """The model's mask rectangles on ``video``, with the crop squares FID compares on (fixed per
        video: the first model's)."""
        region = edit_region(video, len(self.sources[video]), self.faces, crop, mask)
        squares = self._squares.setdefault(video, region.crops)
        return EditRegion(squares, region.masks)

    def score(self, outputs: dict[Path, np.ndarray], crop: CropSpec, mask: MaskSpec) -> dict:
        """One row: ``outputs`` (source video -> its reconstruction's frames, (N, H, W, 3) uint8) scored in
        the mask rectangles of a model with ``crop`` and ``mask``."""
        first, self._real_done = not self._real_done, True
        rows = [self.scorer(video.stem, generated, self.sources[video], self.region(video, crop, mask),
                            real=first)
                for video, generated in outputs.items()]
        return summarize(rows, *self.scorer.fid())

    def of_videos(self, results: dict[Path, Path], crop: CropSpec, mask: MaskSpec) -> dict:
        """One row from files: ``results`` maps each source video to its dub with its own speech."""
        outputs = {video: media.read_frames(result, stop=self.frames) for video, result in results.items()}
        return self.score(outputs, crop, mask)

    def ceiling(self, resolution: int, crop: CropSpec, mask: MaskSpec) -> dict:
        """A perfect ``resolution``-px model: each source crop resized to it and back, pasted as the pipeline
        pastes (the same ``paste_blend``), written to H.264 as the pipeline writes its output (the same
        ``crf``), and scored the same way as a dub."""
        crop = replace(crop, resolution=int(resolution))
        outputs = {v: media.as_written(self._resized(v, int(resolution), crop, mask), MODEL_FPS,
                                       self.options.crf)
                   for v in self.videos}
        return self.score(outputs, crop, mask) | {"resolution": int(resolution)}

    def _resized(self, video: Path, resolution: int, crop: CropSpec, mask: MaskSpec) -> np.ndarray:
        """``video``'s source crops resized to ``resolution`` px and back, pasted with the dubs' options."""
        region = self.region(video, crop, mask)
        return resolution_ceiling(self.sources[video], region, resolution, self.options)

    def ceilings(self, crop: CropSpec, mask: MaskSpec) -> dict[str, dict]:
        """Every ceiling of ``resolutions`` for models with this crop framing and mask. Kept per
        :func:`region_key`: a caller may score them with one model's framing and reuse them for another
        model that frames and masks the face alike (the demo scores them with the shipped model's while
        its own model trains)."""
        key = region_key(crop, mask)
        if key not in self._ceilings:
            self._ceilings[key] = {str(r): self.ceiling(r, crop, mask) for r in self.resolutions}
        return self._ceilings[key]
