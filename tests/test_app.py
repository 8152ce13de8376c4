"""The dubbing web app, driven end to end in a real browser (Debian's headless Chromium via Playwright).

One app server (in this process, on a free loopback port) serves a tiny random model of the real
checkpoint format; the pages upload a real face clip (carphone) and real speech (pyannote sample),
trimmed so that each job is one short segment at one sampling step.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

from lipsync import media
from lipsync.app.catalog import find_checkpoints, find_examples
from lipsync.app.jobs import InferenceResult, PipelineDubber, error_message, pipeline_from_pretrained
from lipsync.app.workdirs import WorkDirs
from lipsync.assets import ensure_assets
from lipsync.infer import LipSyncPipeline
from lipsync.infer.presets import tiny_config

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is in requirements.txt")
from lipsync.app.ui import AppSettings, build_app, launch  # noqa: E402  (imports Gradio)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
SCREENSHOT = Path(__file__).resolve().parents[1] / "bench_results" / "app_screenshot.png"
FACE_FRAMES = 16  # one segment of the pipeline
SPEECH_START_S = 7.6  # pyannote's sample.wav speaks without a pause from 7.6 s to 11.5 s
JOB_TIMEOUT_MS = 120_000


# --- media and model ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real face and speech clips, and bad uploads that each fail in one of the ways the CLI reports."""
    real = ensure_assets(names=["carphone_pristine.mp4", "sample.wav"])
    d = tmp_path_factory.mktemp("clips")
    info = media.probe(real["carphone_pristine.mp4"])
    media.write_video(d / "face.mp4", media.read_frames(real["carphone_pristine.mp4"], stop=FACE_FRAMES), info.fps)
    wave, rate = media.read_audio(real["sample.wav"], sample_rate=None)
    start = int(SPEECH_START_S * rate)
    for name, seconds in (("speech_short.wav", 0.40), ("speech_long.wav", 0.60)):
        media.write_wav(d / name, wave[start:start + int(seconds * rate)], rate)
    (d / "notes.mp4").write_text("this is a text file, not a video\n")  # unreadable file
    media.write_wav(d / "voice_only.mp4", wave[start:start + rate // 2], rate)  # audio, no video stream
    shutil.copyfile(d / "face.mp4", d / "silent_clip.m4a")  # video, no audio stream
    ramp = np.linspace(0, 255, 64 * 80, dtype=np.float32).reshape(64, 80, 1)
    wall = [np.repeat(np.clip(ramp + 8 * t, 0, 255), 3, axis=2).astype(np.uint8) for t in range(FACE_FRAMES)]
    media.write_video(d / "wall.mp4", wall, info.fps)  # a clip with no face anywhere
    return {p.name: p for p in d.iterdir()}


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of checkpoints holding one tiny random pipeline in the real save_pretrained format."""
    root = tmp_path_factory.mktemp("ckpts")
    torch.manual_seed(0)
    LipSyncPipeline.from_config(tiny_config()).save_pretrained(root / "tiny")
    (root / "whisper-like").mkdir()
    (root / "whisper-like" / "config.json").write_text('{"model_type": "whisper"}')  # not a pipeline folder
    return root


# --- the server -----------------------------------------------------------------------------------


@dataclass
class TimedDubber:
    """The real pipeline, with the wall-clock interval of every call recorded (to check the queue)."""

    inner: PipelineDubber
    calls: list[tuple[float, float]] = field(default_factory=list)

    def __call__(self, *args: object, **kwargs: object) -> InferenceResult:
        start = time.monotonic()
        try:
            return self.inner(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            self.calls.append((start, time.monotonic()))


@dataclass
class Server:
    url: str
    workdirs: WorkDirs
    calls: list[tuple[float, float]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(ckpt_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("app")
    calls: list[tuple[float, float]] = []
    pipelines: dict[Path, TimedDubber] = {}

    def factory(folder: Path) -> TimedDubber:
        pipelines[folder] = TimedDubber(pipeline_from_pretrained(folder, device="cpu"), calls)
        return pipelines[folder]

    settings = AppSettings(ckpt_dir=ckpt_dir, demo_dir=root / "demo", work_root=root / "work")
    app = build_app(settings, factory)
    launch(app, host="127.0.0.1", port=_free_port(), block=False)
    try:
        yield Server(app.local_url, app.lipsync_workdirs, calls)  # type: ignore[attr-defined]
    finally:
        app.close()


# --- the browser ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator["playwright_api.BrowserContext"]:
    """Headless Debian Chromium with a fresh profile (Playwright's own browser download is not used)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's browser with `apt-get install -y chromium "
                    "chromium-driver` (the Makefile's system-deps target does this)")
    with playwright_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 1000})
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()


def open_page(browser: "playwright_api.BrowserContext", url: str) -> "playwright_api.Page":
    """A new user session on the app, ready once the checkpoint list is filled."""
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("#run")
    page.wait_for_function("() => document.querySelector('#ckpt input')?.value === 'tiny'")
    return page


def fill_job(page: "playwright_api.Page", video: Path | None, audio: Path | None, steps: int = 1) -> None:
    """Upload the files (when given) and set the number of steps."""
    if video is not None:
        page.locator("#in-video input[type=file]").set_input_files(str(video))
        page.wait_for_selector("#in-video video")
    if audio is not None:
        page.locator("#in-audio input[type=file]").set_input_files(str(audio))
        page.wait_for_selector("#in-audio audio, #in-audio .waveform-container", state="attached")
    box = page.locator("#steps input[type=number]")
    box.fill(str(steps))
    box.press("Enter")


def result_duration(page: "playwright_api.Page", elem_id: str) -> float:
    """``duration`` of the playable <video> inside ``#elem_id`` once its metadata has loaded, in seconds."""
    ready = f"() => {{ const v = document.querySelector('#{elem_id} video'); " \
            "return v !== null && v.readyState >= 1 && isFinite(v.duration); }"
    page.wait_for_function(ready, timeout=JOB_TIMEOUT_MS)
    return float(page.evaluate(f"document.querySelector('#{elem_id} video').duration"))


def toast_text(page: "playwright_api.Page", expected: str, kind: str = "error") -> str:
    """The text of the ``kind`` toast that starts with ``expected`` (the browser may add its own, e.g. "Video
    not playable"); every toast is closed afterwards."""
    toast = page.locator(f"[data-testid=toast-body].{kind} [data-testid=toast-text]", has_text=expected).first
    toast.wait_for(timeout=JOB_TIMEOUT_MS)
    text = toast.inner_text()
    for close in page.locator("[data-testid=toast-close]").all():
        close.click()
    return text


def wait_until_cleaned(workdirs: WorkDirs, timeout_s: float = 10.0) -> None:
    """Job folders are removed right after their result is served; wait for that follow-up event."""
    deadline = time.monotonic() + timeout_s
    while workdirs.active() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workdirs.active() == [], f"job folders left behind: {workdirs.active()}"


# --- tests ----------------------------------------------------------------------------------------


def test_two_users_are_queued_and_each_gets_their_own_dub(server: Server, browser, clips: dict[str, Path],
                                                          tmp_path: Path) -> None:
    """Real face + speech through the page; two sessions submit at once and each plays its own result."""
    fps = float(media.probe(clips["face.mp4"]).fps)
    jobs = {"speech_short.wav": open_page(browser, server.url), "speech_long.wav": open_page(browser, server.url)}
    for speech, page in jobs.items():
        fill_job(page, clips["face.mp4"], clips[speech])
    for page in jobs.values():
        page.click("#run")
    for speech, page in jobs.items():
        audio_s = _audio_seconds(clips[speech])
        assert abs(result_duration(page, "result-video") - audio_s) <= 1 / fps + 1e-3, speech
        assert abs(result_duration(page, "side-by-side") - audio_s) <= 1 / fps + 1e-3, speech
        assert page.locator("#download a").first.get_attribute("href").endswith("_lipsync.mp4")
        assert "Done:" in page.inner_text("#status")
    (a0, a1), (b0, b1) = sorted(server.calls[-2:])
    assert a1 <= b0, "the queue ran two jobs at the same time (concurrency must be 1)"
    wait_until_cleaned(server.workdirs)
    shot = tmp_path / "app_screenshot.png"
    jobs["speech_long.wav"].screenshot(path=str(shot), full_page=True)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, SCREENSHOT)
    for page in jobs.values():
        page.close()


def test_bad_uploads_show_a_message_and_the_app_keeps_serving(server: Server, browser,
                                                              clips: dict[str, Path]) -> None:
    """Each bad input reads as one line on the page; the next, good request on the same page succeeds."""
    page = open_page(browser, server.url)
    cases = [("notes.mp4", "speech_short.wav", "notes.mp4: not a readable media file"),
             ("voice_only.mp4", None, "voice_only.mp4: has no video stream"),
             ("face.mp4", "silent_clip.m4a", "silent_clip.m4a: has no audio stream")]
    for video, audio, expected in cases:
        for elem_id in ("in-video", "in-audio"):  # replace the previous upload
            clear = page.locator(f"#{elem_id} button[aria-label=Clear]")
            if (video if elem_id == "in-video" else audio) and clear.count():
                clear.first.click()
        fill_job(page, clips[video], clips[audio] if audio else None)
        page.click("#run")
        text = toast_text(page, expected)
        assert text.startswith(expected) and "\n" not in text, text
    assert server.workdirs.active() == [], "a failed job must delete its folder"
    fps = float(media.probe(clips["face.mp4"]).fps)
    for video, note in (("wall.mp4", "No face was found in any frame"), ("face.mp4", None)):
        for elem_id in ("in-video", "in-audio"):
            page.locator(f"#{elem_id} button[aria-label=Clear]").first.click()
        fill_job(page, clips[video], clips["speech_short.wav"])
        page.click("#run")
        if note:  # not an error: the clip passes through with the new audio, and the page says so
            assert toast_text(page, note, kind="warning").startswith(note)
        duration = result_duration(page, "result-video")
        assert abs(duration - _audio_seconds(clips["speech_short.wav"])) <= 1 / fps + 1e-3, video
        page.wait_for_function("() => document.querySelector('#status').innerText.includes('Done')")
        page.evaluate("document.querySelector('#result-video video').removeAttribute('src')")  # next wait is fresh
    page.close()


def _audio_seconds(path: Path) -> float:
    wave, rate = media.read_audio(path, sample_rate=None)
    return len(wave) / rate


# --- the parts without a browser ------------------------------------------------------------------


def test_checkpoints_and_examples_come_from_disk(ckpt_dir: Path, tmp_path: Path) -> None:
    assert list(find_checkpoints(ckpt_dir)) == ["tiny"]  # the Whisper-style config.json is not a pipeline
    assert find_checkpoints(tmp_path / "missing") == {}
    demo = tmp_path / "demo"
    (demo / "examples").mkdir(parents=True)
    for name in ("held_out_a.mp4", "held_out_a.wav", "result_only.mp4"):
        (demo / "examples" / name).write_bytes(b"x")
    names = [e.name for e in find_examples(demo)]
    assert names == ["real: carphone + pyannote speech", "demo: examples/held_out_a"]


def test_workdirs_sweep_only_stale_job_folders(tmp_path: Path) -> None:
    dirs = WorkDirs(tmp_path / "work", max_age_s=60)
    old, new = dirs.new(), dirs.new()
    stale_time = time.time() - 120
    os.utime(old, (stale_time, stale_time))
    assert dirs.sweep() == [old] and dirs.active() == [new]
    with pytest.raises(ValueError, match="not a job folder"):
        dirs.remove(tmp_path)
    dirs.close()
    assert not (tmp_path / "work").exists()


def test_error_messages_are_one_line_without_job_paths(tmp_path: Path) -> None:
    folder = tmp_path / "job-x"
    err = media.MediaError(f"{folder}/video/clip.mp4: has no video stream")
    assert error_message(err, folder) == "clip.mp4: has no video stream"
    assert error_message(RuntimeError("boom\nsecond line")).startswith("internal error (RuntimeError: boom)")
