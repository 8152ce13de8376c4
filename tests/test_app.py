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
from playwright import sync_api as playwright_api  # in requirements.txt: if missing, fail (never skip)

from lipsync import media
from lipsync.app.__main__ import parse_args
from lipsync.app.catalog import find_checkpoints, find_examples
from lipsync.app.jobs import (DubRequest, InferenceResult, PipelineCache, PipelineDubber, error_message,
                              pipeline_from_pretrained, run_dub)
from lipsync.app.ui import AppSettings, build_app
from lipsync.app.workdirs import WorkDirs
from lipsync.assets import ROOT, ensure_assets
from lipsync.evaluate.side_by_side import side_by_side
from lipsync.infer import CheckpointError
from lipsync.infer.lengths import source_indices

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
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
    face = media.read_frames(real["carphone_pristine.mp4"], stop=FACE_FRAMES)
    media.write_video(d / "face.mp4", face, info.fps)
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
def ckpt_dir(tmp_path_factory: pytest.TempPathFactory, save_tiny_pipeline) -> Path:
    """A folder of checkpoints holding one tiny random pipeline in the real save_pretrained format."""
    root = tmp_path_factory.mktemp("ckpts")
    save_tiny_pipeline(root / "tiny")
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
    """A running app: its URL, its job folders, and the intervals of the pipeline calls it made."""

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

    def factory(folder: Path) -> TimedDubber:  # loads as the CLI would, skipping the generated-face detector
        pipe = pipeline_from_pretrained(folder, overrides=["device=cpu", "generated_faces=null"])
        return TimedDubber(pipe, calls)

    settings = AppSettings(ckpt_dir=ckpt_dir, demo_dir=root / "demo", work_root=root / "work", shipped=None)
    app = build_app(settings, factory)
    url = app.launch(host="127.0.0.1", port=_free_port(), block=False)
    try:
        yield Server(url, app.workdirs, calls)
    finally:
        app.close()
    assert not app.workdirs.root.exists()


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


def clear_inputs(page: "playwright_api.Page") -> None:
    """Empty the video and audio inputs (their Clear buttons), so the next upload replaces them."""
    for elem_id in ("in-video", "in-audio"):
        clear = page.locator(f"#{elem_id} button[aria-label=Clear]")
        if clear.count():
            clear.first.click()


def plays(page: "playwright_api.Page", elem_id: str) -> bool:
    """Whether the <video> in ``#elem_id`` really decodes and advances when played (muted, so allowed)."""
    video = f"document.querySelector('#{elem_id} video')"
    page.evaluate(f"async () => {{ const v = {video}; v.muted = true; v.currentTime = 0; await v.play(); }}")
    page.wait_for_function(f"() => {video}.currentTime > 0.1 || {video}.ended")
    return True


def result_video(page: "playwright_api.Page", elem_id: str, previous_src: str = "") -> tuple[str, float]:
    """``(src, duration in s)`` of the <video> in ``#elem_id``, once one other than ``previous_src`` plays."""
    video = f"document.querySelector('#{elem_id} video')"
    ready = f"""() => {{ const v = {video}; return v !== null && v.src !== '' && v.src !== {previous_src!r}
                         && v.readyState >= 1 && isFinite(v.duration); }}"""
    page.wait_for_function(ready, timeout=JOB_TIMEOUT_MS)
    src, duration = page.evaluate(f"[{video}.src, {video}.duration]")
    return src, float(duration)


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
    jobs = {speech: open_page(browser, server.url) for speech in ("speech_short.wav", "speech_long.wav")}
    for speech, page in jobs.items():
        fill_job(page, clips["face.mp4"], clips[speech])
    for page in jobs.values():
        page.click("#run")
    for speech, page in jobs.items():
        audio_s = _audio_seconds(clips[speech])
        assert abs(result_video(page, "result-video")[1] - audio_s) <= 1 / fps + 1e-3, speech
        assert plays(page, "result-video")
        assert abs(result_video(page, "side-by-side")[1] - audio_s) <= 1 / fps + 1e-3, speech
        assert page.locator("#download a").first.get_attribute("href").endswith("_lipsync.mp4")
        assert "Done:" in page.inner_text("#status")
    first, second = sorted(server.calls[-2:])
    assert first[1] <= second[0], "the queue ran two jobs at the same time (concurrency must be 1)"
    wait_until_cleaned(server.workdirs)
    shot = tmp_path / "app_screenshot.png"
    jobs["speech_long.wav"].screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
    if os.environ.get("LIPSYNC_UPDATE_SCREENSHOT") == "1":  # the README's picture; tests leave the tree clean
        shutil.copyfile(shot, SCREENSHOT)
    for page in jobs.values():
        page.close()


def test_bad_uploads_show_a_message_and_the_app_keeps_serving(server: Server, browser,
                                                              clips: dict[str, Path]) -> None:
    """Each bad input reads as one line on the page; the next, good request on the same page succeeds."""
    page = open_page(browser, server.url)
    cases = [("notes.mp4", "speech_short.wav", "notes.mp4: not a readable media file"),
             ("voice_only.mp4", "speech_short.wav", "voice_only.mp4: has no video stream"),
             ("face.mp4", "silent_clip.m4a", "silent_clip.m4a: has no audio stream"),
             ("face.mp4", None, "no audio: upload the driving speech")]
    for video, audio, expected in cases:
        clear_inputs(page)
        fill_job(page, clips[video], clips[audio] if audio else None)
        page.click("#run")
        text = toast_text(page, expected)
        assert text.startswith(expected) and "\n" not in text, text
    assert server.workdirs.active() == [], "a failed job must delete its folder"
    fps = float(media.probe(clips["face.mp4"]).fps)
    # The next request succeeds. A clip with no face anywhere is not an error: it passes through with the
    # new audio, and the page says so.
    clear_inputs(page)
    fill_job(page, clips["wall.mp4"], clips["speech_short.wav"])
    page.click("#run")
    note = "No face was found in any frame"
    assert toast_text(page, note, kind="warning").startswith(note)
    duration = result_video(page, "result-video")[1]
    assert abs(duration - _audio_seconds(clips["speech_short.wav"])) <= 1 / fps + 1e-3
    wait_until_cleaned(server.workdirs)
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


def test_the_shipped_model_is_the_first_and_default_choice(ckpt_dir: Path, tmp_path: Path) -> None:
    from lipsync.app.catalog import SHIPPED_MODELS
    from lipsync.app.ui import _checkpoint_choices

    assert AppSettings().shipped == SHIPPED_MODELS
    assert SHIPPED_MODELS == (ROOT / "models" / "showcase", ROOT / "models" / "realface")
    shipped = ckpt_dir / "tiny"  # any pipeline folder stands in for models/showcase
    choices = _checkpoint_choices(AppSettings(shipped=shipped, ckpt_dir=ckpt_dir))
    assert list(choices) == ["shipped: tiny", "tiny"] and choices["shipped: tiny"] == shipped
    assert list(_checkpoint_choices(AppSettings(shipped=tmp_path / "absent", ckpt_dir=ckpt_dir))) == ["tiny"]
    assert list(_checkpoint_choices(AppSettings(shipped=None, ckpt_dir=ckpt_dir))) == ["tiny"]
    both = _checkpoint_choices(AppSettings(shipped=(tmp_path / "absent", shipped), ckpt_dir=ckpt_dir))
    assert list(both) == ["shipped: tiny", "tiny"]  # an absent shipped folder is left out


def test_side_by_side_shows_several_results_for_as_long_as_the_shortest(tmp_path: Path) -> None:
    """source | shipped | own: three panels, the shortest result's length, the audio cut to it, captions."""
    def flat(n: int, level: int) -> list[np.ndarray]:
        return [np.full((48, 64, 3), level, np.uint8) for _ in range(n)]

    media.write_video(tmp_path / "src.mp4", flat(10, 40), 25, crf=0)
    media.write_video(tmp_path / "a.mp4", flat(6, 120), 25, crf=0)
    media.write_video(tmp_path / "b.mp4", flat(9, 200), 25, crf=0)
    media.write_wav(tmp_path / "speech.wav", np.zeros(int(16_000 * 9 / 25), np.float32), 16_000)
    out = side_by_side(tmp_path / "src.mp4", [tmp_path / "a.mp4", tmp_path / "b.mp4"], tmp_path / "speech.wav",
                       tmp_path / "sbs.mp4", labels=["source", "shipped", "own"])
    frames = media.read_frames(out)
    assert frames.shape == (6, 48, 192, 3)
    for i, level in enumerate((40, 120, 200)):
        assert abs(frames[:, 30:, 64 * i + 8: 64 * i + 56].mean() - level) < 4
        assert np.abs(frames[:, :8, 64 * i + 2: 64 * i + 20] - float(level)).mean() > 10  # the caption
    assert _audio_seconds(out) == pytest.approx(6 / 25, abs=0.05)
    with pytest.raises(ValueError, match="2 labels for 3 panels"):
        side_by_side(tmp_path / "src.mp4", [tmp_path / "a.mp4", tmp_path / "b.mp4"], tmp_path / "speech.wav",
                     tmp_path / "x.mp4", labels=["source", "own"])


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


def test_missing_weights_read_as_one_line(ckpt_dir: Path, clips: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copyfile(ckpt_dir / "tiny" / "config.json", broken / "config.json")
    request = DubRequest(clips["face.mp4"], clips["speech_short.wav"], broken, 1, 3.0, 0, "none")
    folder = WorkDirs(tmp_path / "work").new()
    with pytest.raises(CheckpointError) as err:
        run_dub(request, PipelineCache(pipeline_from_pretrained), folder, lambda fraction, desc: None)
    assert error_message(err.value, folder) == f"{broken}/model.safetensors: weights file is missing"


def test_command_line_binds_to_loopback_unless_told() -> None:
    assert parse_args([]).host == "127.0.0.1"
    args = parse_args(["--host", "0.0.0.0", "--port", "8000", "device=cpu", "options.fade=8"])
    assert (args.host, args.port, args.overrides) == ("0.0.0.0", 8000, ["device=cpu", "options.fade=8"])
    with pytest.raises(SystemExit):
        parse_args(["--queue", "0"])
    picked = parse_args(["--shipped", "models/realface", "--shipped", "models/showcase", "device=cpu"])
    assert picked.shipped == [Path("models/realface"), Path("models/showcase")] and picked.overrides == ["device=cpu"]


def test_side_by_side_pairs_each_result_frame_with_its_length_matched_source_frame(tmp_path: Path) -> None:
    """Flat colour per frame: the left panel shows source frame ``source_indices(5, 8)[i]``, the right one
    result frame ``i``; the view carries the driving audio and lasts as long as the result."""
    def flat(values: list[int], blue: int) -> list[np.ndarray]:
        return [np.full((48, 64, 3), (v, 255 - v, blue), np.uint8) for v in values]

    src_levels, res_levels = [0, 60, 120, 180, 240], [10, 40, 70, 100, 130, 160, 190, 220]
    media.write_video(tmp_path / "src.mp4", flat(src_levels, 0), 25, crf=0)
    media.write_wav(tmp_path / "speech.wav", np.zeros(int(16_000 * 8 / 25), np.float32), 16_000)
    media.write_video(tmp_path / "res.mp4", flat(res_levels, 255), 25, crf=0)
    out = side_by_side(*(tmp_path / name for name in ("src.mp4", "res.mp4", "speech.wav", "sbs.mp4")))
    frames = media.read_frames(out)
    assert frames.shape == (8, 48, 128, 3) and media.probe(out).has_audio
    left = frames[:, 8:-8, 8:56, 0].mean(axis=(1, 2))
    right = frames[:, 8:-8, 72:120, 0].mean(axis=(1, 2))
    np.testing.assert_allclose(left, np.array(src_levels)[source_indices(5, 8)], atol=6)
    np.testing.assert_allclose(right, res_levels, atol=6)
    assert not list(tmp_path.glob("*.npy")), "the scratch panel file must be removed"


def test_a_bad_override_is_one_line_before_any_server_starts(tmp_path: Path) -> None:
    from lipsync.app.__main__ import main

    with pytest.raises(SystemExit) as info:
        main(["--ckpt-dir", str(tmp_path), "options.nosuch=1"])
    assert str(info.value.code).startswith("lipsync-app: error: Could not override 'options.nosuch'")
    assert "\n" not in str(info.value.code)


def test_the_preset_reaches_the_pipeline_options_and_a_bad_one_is_one_line(tmp_path: Path) -> None:
    """The page's speed preset is a request field: validated with the others, and the dubber passes it
    to the pipeline's options (the steps slider, set from the preset, overrides its step count)."""
    seen = {}

    class Pipe:
        def __call__(self, video, audio, output, options):
            seen["options"] = options.resolved()

    from lipsync.infer import InferenceOptions
    from lipsync.sampling.presets import PRESETS

    dubber = PipelineDubber(Pipe(), InferenceOptions())  # type: ignore[arg-type]
    dubber(tmp_path / "v.mp4", tmp_path / "a.wav", tmp_path / "o.mp4", steps=4, guidance=2.0, seed=1,
           silence="none", preset="fast")
    o = seen["options"]
    assert (o.preset, o.num_steps, o.sampler, o.overlap) == ("fast", 4, PRESETS["fast"]["sampler"],
                                                             PRESETS["fast"]["overlap"])
    with pytest.raises(ValueError, match="unknown preset 'turbo'"):
        DubRequest(tmp_path, tmp_path, tmp_path, 4, 2.0, 0, "none", preset="turbo").validate()
