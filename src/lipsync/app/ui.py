"""The Gradio page: widgets in, one queued job, result videos and a download link out.

Queueing: the dubbing event runs with concurrency 1 (one model, one CPU/GPU), so a second user waits in
Gradio's queue and sees their position; each job works only in its own folder (:mod:`.workdirs`) and gets
its own outputs back through its own event, so two users' files never meet.
"""

from __future__ import annotations

import html
import logging
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

# Set before Gradio is imported: no usage reporting (the machine is offline; each attempt would wait).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from lipsync import assets  # noqa: E402
from lipsync.app.catalog import (SHIPPED_MODELS, Example, find_checkpoints, find_examples,  # noqa: E402
                                 is_pipeline_folder)
from lipsync.app.jobs import (DubRequest, PipelineCache, PipelineFactory, error_message,  # noqa: E402
                              infer_config, infer_options, pipeline_from_pretrained, run_dub)
from lipsync.app.workdirs import WorkDirs  # noqa: E402
from lipsync.infer import InferenceOptions  # noqa: E402
from lipsync.infer.pipeline import PAPER_GUIDANCE  # noqa: E402
from lipsync.infer.silence import POLICIES  # noqa: E402
from lipsync.sampling.presets import PRESETS  # noqa: E402

log = logging.getLogger(__name__)

TITLE = "lipsync: audio-driven lip sync"
INTRO = (f"# {TITLE}\nUpload a video with one visible face and the speech it should say (or pick an "
         "example), choose a checkpoint, and press **Lip-sync**. The result keeps the video's frame rate and "
         "resolution and carries your audio unchanged; it lasts as long as the audio.")
PRESET_HELP = {"paper": "the paper's 15 Euler steps, guidance at every step",
               "fast": "6 Euler steps, guidance mid-trajectory, less overlap: under 1/4 of the compute",
               "student": "a distilled student's 2 passes, guidance folded in (set guidance 1)"}
SILENCE_HELP = {"none": "move the lips everywhere", "keep": "keep the original mouth in pauses",
                "close": "close the mouth in pauses"}


@dataclass
class AppSettings:
    """Where the app looks for models and examples, and how it treats requests.

    Attributes:
        shipped: the committed models (``models/showcase``, the default choice, and ``models/realface``),
            offered first where they are there; one folder, or None to leave them out.
        ckpt_dir: scanned recursively for ``save_pretrained`` pipeline folders.
        demo_dir: where ``make demo`` leaves example clips (video + same-stem audio).
        assets_dir: the packaged real media (carphone clip, pyannote speech).
        queue_size: jobs that may wait in the queue; more are refused with a message.
        max_age_s: lifetime of anything a request leaves on disk if not cleaned earlier.
        work_root: parent of the per-request folders (a fresh temporary folder when None).
        overrides: Hydra overrides of the CLI's ``conf/infer.yaml`` (device, face backend, options); the
            page's sliders start from the resulting options.
    """

    ckpt_dir: Path = Path("outputs")
    demo_dir: Path = Path("outputs/demo")
    shipped: Path | tuple[Path, ...] | None = SHIPPED_MODELS
    assets_dir: Path = assets.DEFAULT_DIR
    queue_size: int = 8
    max_age_s: float = 3600.0
    work_root: Path | None = None
    overrides: tuple[str, ...] = ()


def _checkpoint_choices(settings: AppSettings) -> dict[str, Path]:
    """The shipped models first (the first is the default choice), then every pipeline folder under
    ``ckpt_dir``."""
    shipped = settings.shipped
    listed = () if shipped is None else (shipped,) if isinstance(shipped, Path) else tuple(shipped)
    first = {f"shipped: {p.name}": p for p in listed if is_pipeline_folder(p)}
    return first | find_checkpoints(settings.ckpt_dir)


def _refresh_checkpoints(settings: AppSettings) -> gr.Dropdown:
    choices = list(_checkpoint_choices(settings))
    return gr.Dropdown(choices=choices, value=choices[0] if choices else None)


def _inputs_column(settings: AppSettings, examples: list[Example], d: InferenceOptions
                   ) -> dict[str, gr.components.Component]:
    """Video, audio, examples, checkpoint and sampling settings; returns the widgets by name."""
    w: dict[str, gr.components.Component] = {}
    w["video"] = gr.Video(label="Face video", sources=["upload"], elem_id="in-video")
    w["audio"] = gr.Audio(label="Driving speech", sources=["upload"], type="filepath", elem_id="in-audio")
    if examples:
        gr.Examples([[str(e.video), str(e.audio)] for e in examples], inputs=[w["video"], w["audio"]],
                    example_labels=[e.name for e in examples], label="Examples (click to load)")
    with gr.Row():
        found = list(_checkpoint_choices(settings))  # also rescanned on every page load
        w["ckpt"] = gr.Dropdown(label="Checkpoint", choices=found, value=found[0] if found else None,
                                elem_id="ckpt", scale=4, info=f"the shipped models (showcase: cartoon world; realface: real faces), then "
                                     f"pipeline folders under {settings.ckpt_dir}")
        w["refresh"] = gr.Button("Rescan", scale=1, size="sm")
    with gr.Accordion("Sampling", open=True):
        w["preset"] = gr.Radio([(f"{p}: {PRESET_HELP.get(p, p)}", p) for p in PRESETS], value=d.preset,
                               label="Speed preset", elem_id="preset")
        w["steps"] = gr.Slider(1, 50, value=d.resolved().num_steps, step=1, label="Steps (EDM)",
                               elem_id="steps", info="starts at the preset's; moving it overrides the preset")
        w["guidance"] = gr.Slider(1.0, 8.0, value=d.guidance_scale or PAPER_GUIDANCE, step=0.1,
                                  label="Guidance scale")
        w["seed"] = gr.Number(value=d.seed, precision=0, label="Seed")
        w["silence"] = gr.Radio([(f"{p}: {SILENCE_HELP[p]}", p) for p in POLICIES], value=d.silence,
                                label="Silence in the audio", elem_id="silence")
        w["face"] = gr.Textbox(value=str(d.face), label="Face to dub", elem_id="face",
                               info="largest | speaker (moves with the video's own sound) | index:N (from the "
                                    "left, from 0) | point:X,Y | box:X0,Y0,X1,Y1 (video pixels); per shot")
    w["run"] = gr.Button("Lip-sync", variant="primary", elem_id="run")
    return w


def preset_sliders(preset: str) -> tuple[int, Any]:
    """Where a preset puts the steps and guidance sliders: its steps; guidance 1 for the student, whose
    teacher's guidance is folded in (an unconditional pass would only cost), else left where it is."""
    return PRESETS[preset]["num_steps"], 1.0 if preset == "student" else gr.update()


def _outputs_column() -> dict[str, gr.components.Component]:
    w: dict[str, gr.components.Component] = {}
    w["result"] = gr.Video(label="Result", interactive=False, elem_id="result-video")
    w["compare"] = gr.Video(label="Side by side: source | result", interactive=False, elem_id="side-by-side")
    w["download"] = gr.File(label="Download the result", interactive=False, elem_id="download")
    w["status"] = gr.Markdown("", elem_id="status")
    return w


def _request(settings: AppSettings, video: str | None, audio: str | None, ckpt: str | None, steps: float,
             guidance: float, seed: float | None, silence: str, face: str = "largest",
             preset: str = "paper") -> DubRequest:
    """The job a page submitted, its checkpoint label resolved to the folder (rescanned: it may be gone)."""
    choices = _checkpoint_choices(settings)
    if ckpt and ckpt not in choices:
        raise ValueError(f"checkpoint {ckpt!r} is no longer under {settings.ckpt_dir}; press Rescan")
    return DubRequest(Path(video) if video else None, Path(audio) if audio else None,
                      choices[ckpt] if ckpt else None, int(steps), float(guidance), int(seed or 0), silence,
                      (face or "largest").strip(), preset)


def build_app(settings: AppSettings, factory: PipelineFactory | None = None) -> "LipSyncApp":
    """The page, with its queue configured; serve it with :meth:`LipSyncApp.launch`.

    Args:
        settings: where to find checkpoints and examples, queue size, file lifetimes, CLI config overrides.
        factory: loads a pipeline from a checkpoint folder; default :func:`pipeline_from_pretrained` with
            ``settings.overrides`` (exactly what ``python -m lipsync.infer`` loads).
    """
    defaults = infer_options(infer_config(settings.overrides))  # first: a bad override leaves nothing behind
    workdirs = WorkDirs(settings.work_root, settings.max_age_s)
    pipelines = PipelineCache(factory or partial(pipeline_from_pretrained, overrides=settings.overrides))

    # track_tqdm: the pipeline's own bars (faces, segments) drive the page's progress bar.
    def dub(video: str | None, audio: str | None, ckpt: str | None, steps: float, guidance: float,
            seed: float | None, silence: str, face: str, preset: str,
            progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:
        folder = workdirs.new()
        try:
            request = _request(settings, video, audio, ckpt, steps, guidance, seed, silence, face, preset)
            out = run_dub(request, pipelines, folder, lambda fraction, desc: progress(fraction, desc=desc))
        except Exception as err:  # every failure becomes a message on the page; the app keeps serving
            workdirs.remove(folder)
            message = error_message(err, folder)
            log.warning("job failed: %s", message)
            # Gradio renders the message as HTML, and it may hold an uploaded file's name: escape it.
            raise gr.Error(html.escape(message), duration=None, title="Lip sync failed",
                           print_exception=False) from None
        if out.note:
            gr.Warning(out.note, duration=None)
        return str(out.result), str(out.side_by_side), str(out.result), out.summary(), str(folder)

    # Gradio's copies of uploads and results: swept every max_age / 4, deleted once max_age old.
    sweep = (max(60, int(settings.max_age_s / 4)), int(settings.max_age_s))
    with gr.Blocks(title=TITLE, delete_cache=sweep) as app:
        gr.Markdown(INTRO)
        # Closing the tab deletes the session's state, and with it a job folder not yet cleaned up.
        job_folder = gr.State(None, delete_callback=workdirs.remove)
        with gr.Row():
            with gr.Column():
                w = _inputs_column(settings, find_examples(settings.demo_dir, settings.assets_dir), defaults)
            with gr.Column():
                o = _outputs_column()
        inputs = [w[k] for k in ("video", "audio", "ckpt", "steps", "guidance", "seed", "silence", "face",
                                 "preset")]
        outputs = [o["result"], o["compare"], o["download"], o["status"], job_folder]
        run = w["run"].click(dub, inputs, outputs, concurrency_limit=1, concurrency_id="dub",
                             show_progress="full")
        # Gradio copied the results into its cache while answering, so the job folder can go now.
        run.success(lambda folder: workdirs.remove(folder), job_folder, job_folder, queue=False)
        w["preset"].change(preset_sliders, w["preset"], [w["steps"], w["guidance"]], queue=False)
        w["refresh"].click(lambda: _refresh_checkpoints(settings), None, w["ckpt"], queue=False)
        app.load(lambda: _refresh_checkpoints(settings), None, w["ckpt"], queue=False)
    app.queue(default_concurrency_limit=1, max_size=settings.queue_size)
    return LipSyncApp(app, workdirs)


@dataclass
class LipSyncApp:
    """The page and the job folders it owns; :meth:`launch` serves it, :meth:`close` stops and cleans up."""

    blocks: gr.Blocks
    workdirs: WorkDirs

    def launch(self, host: str = "127.0.0.1", port: int | None = None, block: bool = True) -> str:
        """Serve the page; returns its local URL once it stops (``block``) or at once (tests, notebooks).

        Args:
            host: interface to bind; 127.0.0.1 (this machine only) unless the caller asks otherwise.
            port: TCP port (None: Gradio picks a free one from 7860 up).
            block: wait until the server is interrupted, then clean up.
        """
        theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
        try:
            self.blocks.launch(server_name=host, server_port=port, show_error=True, ssr_mode=False,
                               theme=theme, prevent_thread_lock=not block, quiet=not block)
        finally:
            if block:
                self.workdirs.close()
        return self.blocks.local_url

    def close(self) -> None:
        """Stop the server and remove every job folder (Gradio empties its own cache on close)."""
        self.blocks.close()
        self.workdirs.close()
