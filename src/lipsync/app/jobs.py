"""One dubbing job, independent of the web page: validate, run the pipeline, build the side-by-side view.

The page (:mod:`lipsync.app.ui`) only translates between widgets and these calls, so everything here is
testable without a browser, and the pipeline is injected (a factory from a checkpoint folder to a
callable), so the same job code runs the real :class:`~lipsync.infer.LipSyncPipeline`
(:func:`pipeline_from_pretrained`) or any other.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Protocol, Sequence

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lipsync import media
from lipsync.app.workdirs import place_input
from lipsync.cli import compose
from lipsync.clock import Stopwatch
from lipsync.evaluate.side_by_side import side_by_side
from lipsync.infer import InferenceOptions, InferenceResult, LipSyncPipeline
from lipsync.infer.face_choice import parse_face
from lipsync.infer.pipeline import options_from_mapping
from lipsync.infer.silence import check_policy
from lipsync.sampling.presets import check_preset

log = logging.getLogger(__name__)

ProgressFn = Callable[[float, str], None]
"""``progress(fraction in [0, 1], description)``."""


class Dubber(Protocol):
    """What the app needs from a loaded pipeline (progress is reported through its tqdm bars)."""

    def __call__(self, video: Path, audio: Path, output: Path, *, steps: int, guidance: float, seed: int,
                 silence: str, face: str = "largest", preset: str = "paper") -> InferenceResult:
        """Lip-sync ``video`` to ``audio`` and write ``output`` (mp4 with the driving audio)."""
        ...


PipelineFactory = Callable[[Path], Dubber]
"""Loads the pipeline stored in a ``save_pretrained`` folder."""


def infer_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The CLI's own config (``conf/infer.yaml``) with Hydra ``overrides``: the app and the CLI share it."""
    return compose("infer", overrides)


def infer_options(cfg: DictConfig) -> InferenceOptions:
    """The inference options of a composed ``infer`` config (the page starts from these)."""
    return options_from_mapping(OmegaConf.to_container(cfg.options, resolve=True))


class PipelineDubber:
    """A :class:`~lipsync.infer.LipSyncPipeline` behind the app's :class:`Dubber` call.

    Args:
        pipe: the loaded pipeline.
        options: every option the page does not set (the CLI config's values).
    """

    def __init__(self, pipe: LipSyncPipeline, options: InferenceOptions) -> None:
        self.pipe, self.options = pipe, options

    def __call__(self, video: Path, audio: Path, output: Path, *, steps: int, guidance: float, seed: int,
                 silence: str, face: str = "largest", preset: str = "paper") -> InferenceResult:
        options = replace(self.options, preset=preset, num_steps=steps, guidance_scale=guidance, seed=seed,
                          silence=silence, face=face)
        return self.pipe(video, audio, output, options)


def pipeline_from_pretrained(folder: Path, overrides: Sequence[str] = ()) -> PipelineDubber:
    """Load a ``save_pretrained`` folder as ``python -m lipsync.infer`` would (the app's default factory).

    Args:
        folder: the pipeline folder.
        overrides: ``conf/infer.yaml`` overrides, e.g. ``["device=cpu", "face_backend=insightface"]``.
    """
    cfg = infer_config(overrides)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    pipe = LipSyncPipeline.from_pretrained(
        folder, faces=instantiate(cfg.faces), device=device,
        generated_faces=instantiate(cfg.generated_faces) if cfg.generated_faces else None)
    return PipelineDubber(pipe, infer_options(cfg))


@dataclass(frozen=True)
class DubRequest:
    """Everything one user asked for; paths may be None when a widget was left empty."""

    video: Path | None
    audio: Path | None
    checkpoint: Path | None
    steps: int
    guidance: float
    seed: int
    silence: str
    face: str = "largest"  # options.face: largest | speaker | index:N | point:X,Y | box:X0,Y0,X1,Y1
    preset: str = "paper"  # options.preset: paper | fast | student

    def validate(self) -> None:
        """Raise a one-line ValueError for anything missing or out of range (before any work is done)."""
        if self.video is None:
            raise ValueError("no video: upload a face video or pick an example")
        if self.audio is None:
            raise ValueError("no audio: upload the driving speech or pick an example")
        if self.checkpoint is None:
            raise ValueError("no checkpoint chosen: train one (`make demo`) or start the app with "
                             "--ckpt-dir DIR")
        if not 1 <= self.steps <= 200:
            raise ValueError(f"steps must be in [1, 200], got {self.steps}")
        if not 1.0 <= self.guidance <= 20.0:
            raise ValueError(f"guidance must be in [1, 20], got {self.guidance}")
        check_policy(self.silence)
        parse_face(self.face)
        check_preset(self.preset)


@dataclass(frozen=True)
class DubResult:
    """Files a finished job leaves in its folder, and what it cost."""

    result: Path
    side_by_side: Path
    duration_s: float
    seconds: float
    note: str = ""

    def summary(self) -> str:
        """One line for the page."""
        rate = self.seconds / max(self.duration_s, 1e-9)
        return (f"Done: {self.duration_s:.2f} s of video in {self.seconds:.1f} s ({rate:.1f} s per second "
                f"of output). {self.note}").strip()


def face_note(run: InferenceResult) -> str:
    """What the user should know about frames the pipeline left unedited (empty when every frame was edited).

    The pipeline never fails for want of a face: face-less frames pass through unchanged.
    """
    if run.reference_frame < 0:
        return "No face was found in any frame: the video passed through unchanged, with your audio."
    unedited = float((run.edit_weight <= 0).mean())
    if unedited > 0:
        return f"{100 * unedited:.0f}% of the frames (no face, or silent) passed through unchanged."
    return ""


class PipelineCache:
    """Keeps the most recently used pipeline loaded (one model in memory; loading is the slow part)."""

    def __init__(self, factory: PipelineFactory) -> None:
        self.factory = factory
        self._folder: Path | None = None
        self._pipe: Dubber | None = None
        self._lock = threading.Lock()

    def get(self, folder: Path) -> Dubber:
        """The pipeline of ``folder``, loading it (and dropping the previous one) when it changes."""
        folder = Path(folder).resolve()
        with self._lock:
            if self._pipe is None or folder != self._folder:
                self._pipe, self._folder = None, None  # free the old model before loading the new one
                self._pipe, self._folder = self.factory(folder), folder
            return self._pipe


def run_dub(request: DubRequest, pipelines: PipelineCache, folder: Path, progress: ProgressFn) -> DubResult:
    """Run one job entirely inside ``folder``: inputs copied in, result and side-by-side written there.

    Phases: 1. validate the request; 2. place and check the inputs; 3. load the pipeline; 4. generate;
    5. side-by-side.
    """
    clock = Stopwatch()
    request.validate()
    video = place_input(request.video, folder / "video")  # type: ignore[arg-type]
    audio = place_input(request.audio, folder / "audio")  # type: ignore[arg-type]
    media.probe(video)  # bad uploads fail here, before the model is loaded
    media.read_audio(audio)
    progress(0.0, "loading the model")
    pipe = pipelines.get(request.checkpoint)  # type: ignore[arg-type]
    result = folder / f"{video.stem}_lipsync.mp4"
    progress(0.05, "lip-syncing")
    run = pipe(video, audio, result, steps=request.steps, guidance=request.guidance, seed=request.seed,
               silence=request.silence, face=request.face, preset=request.preset)
    progress(0.95, "building the side-by-side view")
    compare = side_by_side(video, result, audio, folder / f"{video.stem}_side_by_side.mp4")
    duration = media.probe(result).duration_s
    return DubResult(result, compare, duration, clock.total, face_note(run))


def error_message(err: BaseException, folder: Path | None = None) -> str:
    """The one line a user sees for a failed job (paths inside the job folder shortened to file names).

    Bad input (ValueError, which covers MediaError and CheckpointError, and missing files) reads as the
    pipeline's own message; anything else is a bug, logged with its traceback and shown by type.
    """
    text = (str(err).strip().splitlines() or [""])[0]
    if folder is not None:
        for sub in ("video", "audio"):
            text = text.replace(f"{folder / sub}/", "")
        text = text.replace(f"{folder}/", "")
    if isinstance(err, (ValueError, FileNotFoundError)):
        return text
    log.exception("lip-sync job failed", exc_info=err)
    return f"internal error ({type(err).__name__}: {text}); the server log has the details"
