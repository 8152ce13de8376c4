"""``python -m lipsync.prepare`` on real media and a corpus of broken files: timing, filters, manifest,
shards, idempotence, and resuming after a kill."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from litdata import StreamingDataset

from _data_corpus import astronaut_frames, make_carphone, prepare_config, prepared_corpus, speech
from lipsync import media
from lipsync.assets import ROOT, asset_path, ensure_assets
from lipsync.data import shards
from lipsync.data.faces import FaceTrack, MediaPipeFaces, landmarks_file
from lipsync.prepare.curate import segment_bounds
from lipsync.prepare.decode import read_audio_aligned, resampled_frames
from lipsync.prepare.filters import ClipData, MinDuration, MinFaceSize, QualityFilter, SyncFilter, split_track
from lipsync.prepare.run import list_inputs, read_manifest, skipped_files


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    return prepared_corpus(tmp_path_factory.getbasetemp() / "data_corpus")


# --- writing: the same frames give the same file on any machine ------------------------------------

_WRITE_ON_ONE_CORE = """
import os, sys, numpy as np
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
from lipsync import media
frames = np.load(sys.argv[1])
media.write_video(sys.argv[2], frames, 25)
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 usable cores to compare with 1")
def test_a_video_is_the_same_file_whatever_cores_the_writer_may_use(tmp_path: Path) -> None:
    # x264 picks its thread count from the usable cores unless told, and its output depends on it: a
    # dub written on one core and on two decoded to different pixels (sync 0.03 apart on one pair).
    rng = np.random.default_rng(0)
    frames = np.clip(astronaut_frames(24, 128) + rng.normal(0, 12, (24, 128, 128, 3)), 0, 255).astype(np.uint8)
    np.save(tmp_path / "frames.npy", frames)
    here = media.write_video(tmp_path / "two_cores.mp4", frames, 25)
    subprocess.run([sys.executable, "-c", _WRITE_ON_ONE_CORE, str(tmp_path / "frames.npy"),
                    str(tmp_path / "one_core.mp4")], check=True, cwd=ROOT)
    assert here.read_bytes() == (tmp_path / "one_core.mp4").read_bytes()


# --- decoding on the model's clock -----------------------------------------------------------------


def test_resampling_maps_by_timestamp() -> None:
    ensure_assets()
    rows = [(i, t) for i, t, _ in resampled_frames(asset_path("carphone_pristine.mp4"), 25)]
    assert len(rows) == 100  # 120 frames at 29.97 fps = 4.004 s -> 100 frames at 25 fps
    fps_src = 30000 / 1001
    for k, (i, t) in enumerate(rows):
        assert abs(t - k / 25) <= 0.5 / fps_src + 1e-6  # the nearest source frame in time
        assert i == round(k / 25 * fps_src)


def test_audio_is_aligned_by_time_without_drift(tmp_path: Path) -> None:
    wave = speech(3.0)
    video = media.write_video(tmp_path / "a.mp4", astronaut_frames(75, 64), fps=25, audio=wave, audio_rate=16000)
    aligned = read_audio_aligned(video, 0.0, 48000)
    # AAC is lossy; the lag of the best match must be ~0 at the start and at the end (no drift)
    for a, b in ((0, 16000), (32000, 48000)):
        x, y = wave[a:b], aligned[a:b]
        lags = range(-40, 41)
        best = max(lags, key=lambda lag: float(np.dot(x[40:-40], np.roll(y, -lag)[40:-40])))
        assert abs(best) <= 1
    shifted = read_audio_aligned(asset_path("sample.wav"), 0.5, 16000)
    np.testing.assert_allclose(shifted, media.read_audio(asset_path("sample.wav"))[0][8000:24000], atol=1e-4)


# --- filters -----------------------------------------------------------------------------------------


def _track(boxes: np.ndarray) -> FaceTrack:
    lm = np.repeat(boxes[:, None, :2], 478, axis=1) + np.linspace(0, 10, 478)[None, :, None]
    lm[np.isnan(boxes).any(1)] = np.nan
    return FaceTrack(boxes, lm, MediaPipeFaces.layout)


def test_split_track_fills_short_gaps_and_cuts_at_long_gaps_and_jumps() -> None:
    boxes = np.tile(np.array([[10, 10, 60, 60]], np.float32), (120, 1))
    boxes[20:28] = np.nan                     # 8 face-less frames: filled
    boxes[40:49] = np.nan                     # 9: cut
    boxes[80:] += 40                          # the face jumps (40, 40) px = 1.13 face sizes: cut
    filled, clips = split_track(_track(boxes), max_gap=8, max_shift=0.3, max_scale=0.25)
    assert [(c.start, c.stop) for c in clips] == [(0, 40), (49, 80), (80, 120)]
    assert "no face for 9 frames" in clips[1].cut and "jumped 1.13 face sizes" in clips[2].cut
    assert not np.isnan(filled.boxes[20:28]).any() and np.isnan(filled.boxes[40:49]).all()
    boxes[100:] = [[25, 25, 125, 125]]        # same centre, size doubles: cut on scale
    _, clips = split_track(_track(boxes))
    assert "size changed by 2.00x" in clips[-1].cut


def test_size_and_duration_predicates_give_reasons() -> None:
    small = np.tile(np.array([[0, 0, 30, 30]], np.float32), (5, 1))
    assert "never larger than 64 px (largest 30 px)" in MinFaceSize(64)(_track(small))
    assert MinFaceSize(20)(_track(small)) is None
    assert MinFaceSize(20)(_track(small * np.nan)) == "no face found in any frame"
    assert MinDuration(2.0).check(49) == "clip shorter than 2 s (49 frames < 50)"
    assert MinDuration(2.0).check(50) is None


def test_model_filters_skip_without_weights_and_run_with_them(tmp_path: Path) -> None:
    assert "set filters.quality.weights=PATH" in QualityFilter(None).skip_reason()
    assert "set filters.sync.weights=PATH" in SyncFilter(str(tmp_path / "syncnet_v2.model")).skip_reason()

    class Brightness(torch.nn.Module):  # a stand-in scorer in the HyperIQA TorchScript contract
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x.mean(dim=(1, 2, 3)) + 2.5) * 20

    path = tmp_path / "iqa.pt"
    torch.jit.script(Brightness()).save(str(path))
    clip = lambda v: ClipData(np.full((8, 32, 32, 3), v, np.uint8), np.zeros((8, 4)), np.zeros(5120))  # noqa: E731
    quality = QualityFilter(str(path), min_score=40.0)
    assert quality.skip_reason() is None
    assert quality(clip(250)) is None
    assert "image quality" in quality(clip(5))


def test_segments_cover_a_clip_without_overlap() -> None:
    assert segment_bounds(120, 50) == [(0, 60), (60, 120)]
    assert segment_bounds(50, 100) == [(0, 50)]
    bounds = segment_bounds(437, 100)
    assert bounds[0][0] == 0 and bounds[-1][1] == 437 and all(100 <= b - a < 200 for a, b in bounds)


# --- the whole stage ---------------------------------------------------------------------------------


def test_every_input_and_clip_has_a_manifest_row_with_its_reason(corpus) -> None:
    rows = read_manifest(corpus["output"] / "manifest.jsonl")
    inputs = {Path(r["path"]).name: r for r in rows if r["kind"] == "input"}
    assert set(inputs) == {"astronaut.mp4", "carphone.mp4", *corpus["expected"]}
    for name, words in corpus["expected"].items():
        assert inputs[name]["status"] == "rejected", inputs[name]
        assert words in inputs[name]["reason"]
    for name in ("astronaut.mp4", "carphone.mp4"):
        assert inputs[name]["status"] == "ok" and inputs[name]["segments"] >= 1
        assert any("skipped" in s for s in inputs[name]["skipped_filters"])
        clips = [r for r in rows if r["kind"] == "clip" and r["video_id"] == inputs[name]["video_id"]]
        assert clips and all(c["status"] in ("kept", "dropped") for c in clips)
    assert inputs["carphone.mp4"]["frames"] == 100  # 29.97 fps -> 25 fps by timestamps


def test_shards_hold_crops_audio_landmarks_and_source_metadata(corpus) -> None:
    dataset = StreamingDataset(str(corpus["output"] / "shards"))
    assert len(dataset) == corpus["summary"]["segments"] >= 2
    keys = set()
    for i in range(len(dataset)):
        item = dataset[i]
        n = shards.num_frames(item)
        frames = shards.decode_jpegs(item["frames"], item["frame_offsets"], range(n))
        assert frames.shape == (n, 64, 64, 3) and n >= 50
        source = json.loads(item["source"])["path"]
        expected = read_audio_aligned(source, 0.0, (item["start_frame"] + n) * 640)[item["start_frame"] * 640:]
        np.testing.assert_array_equal(item["audio"], expected)  # 640 samples per frame, frame-aligned
        lips = np.asarray(item["landmarks"])[:, shards.layout_of(item).mouth_idx]
        assert (lips > 0).all() and (lips < 64).all()  # crop pixels, face in the middle
        assert abs(item["start_time"] - item["start_frame"] / 25) < 0.02
        assert item["key"].startswith(item["video_id"] + "/")
        assert len(item["ref_offsets"]) == 9 and np.asarray(item["ref_landmarks"]).shape[0] == 8
        keys.add(item["key"])
    assert len(keys) == len(dataset)


def test_a_second_run_does_nothing(corpus) -> None:
    from lipsync.prepare.__main__ import run

    out = corpus["output"]
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    summary = run(corpus["cfg"])
    assert summary["curated"] == 0 and not summary["packed"] and not summary["manifest_changed"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_input_list_file_and_errors(corpus, tmp_path: Path) -> None:
    listing = tmp_path / "inputs.txt"
    listing.write_text(f"# two videos\n{corpus['inputs'] / 'astronaut.mp4'}\n\n{corpus['inputs'] / 'carphone.mp4'}\n")
    assert [p.name for p in list_inputs(listing)] == ["astronaut.mp4", "carphone.mp4"]
    with pytest.raises(ValueError, match="no such file or folder"):
        list_inputs(tmp_path / "missing")
    with pytest.raises(ValueError, match="no media files"):
        list_inputs(tmp_path)  # holds only the .txt list


def test_landmarks_file_backend_feeds_prepare(tmp_path: Path) -> None:
    from lipsync.prepare.__main__ import run

    videos = tmp_path / "videos"
    video = make_carphone(videos / "talk.mp4", frames=75)
    frames = media.read_frames(video)
    MediaPipeFaces().track(video, enumerate(frames)).save(landmarks_file(video))
    summary = run(prepare_config(videos, tmp_path / "out", "face_backend=landmarks-file"))
    assert summary["status"] == {"ok": 1} and summary["segments"] == 1

    # The same file curated from another folder gives the same training data: only the path-derived
    # strings differ (a path-seeded reference pool once made two curations of one corpus train apart).
    other = tmp_path / "elsewhere" / "talk.mp4"
    other.parent.mkdir()
    shutil.copy(video, other)
    shutil.copy(landmarks_file(video), landmarks_file(other))
    run(prepare_config(other.parent, tmp_path / "out2", "face_backend=landmarks-file"))
    a, b = (StreamingDataset(str(tmp_path / d / "shards"))[0] for d in ("out", "out2"))
    assert a["video_id"] != b["video_id"] and a.keys() == b.keys()
    for name in sorted(set(a) - {"key", "video_id", "source"}):
        assert np.array_equal(np.asarray(a[name]), np.asarray(b[name])), name


def test_every_file_not_taken_is_in_the_manifest_with_its_reason(tmp_path: Path) -> None:
    """prepare passed over files whose extension it does not know without a word; now each one is a
    manifest row of kind "skipped" with the reason, and the summary counts them."""
    from lipsync.prepare.__main__ import run

    videos = tmp_path / "videos"
    video = make_carphone(videos / "talk.mp4", frames=75)
    MediaPipeFaces().track(video, enumerate(media.read_frames(video))).save(landmarks_file(video))
    (videos / "notes.txt").write_text("shot on a phone\n")
    (videos / "README").write_text("no extension\n")
    (videos / "old").mkdir()
    shutil.copy(video, videos / "old" / "take2.mp4.bak")
    summary = run(prepare_config(videos, tmp_path / "out", "face_backend=landmarks-file",
                                 "extensions=[mp4,mov]"))
    assert summary["status"] == {"ok": 1} and summary["skipped_files"] == 4
    rows = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert [Path(r["path"]).name for r in rows if r["kind"] == "input"] == ["talk.mp4"]
    skipped = {Path(r["path"]).relative_to(videos.resolve()).as_posix(): r["reason"] for r in rows
               if r["kind"] == "skipped"}
    assert skipped == {
        "README": "extension '(none)' is not one of extensions=[mov, mp4]",
        "notes.txt": "extension '.txt' is not one of extensions=[mov, mp4]",
        "old/take2.mp4.bak": "extension '.bak' is not one of extensions=[mov, mp4]",
        "talk.mp4.landmarks.npz": "extension '.npz' is not one of extensions=[mov, mp4]",  # read beside it
    }
    assert skipped_files(videos / "list.txt") == [] and skipped_files(video) == []  # every line is taken


def _kill_mid_run(target, args, staging: Path) -> None:
    """Run ``target(*args)`` in a fresh process and SIGKILL it once the first input is staged."""
    import multiprocessing

    # spawn, not fork: forking a process that has run mediapipe graphs corrupts the child's heap
    proc = multiprocessing.get_context("spawn").Process(target=target, args=args)
    proc.start()
    deadline = time.time() + 120
    while time.time() < deadline and proc.is_alive() and not list(staging.glob("*/record.json")):
        time.sleep(0.02)
    assert proc.is_alive(), f"the run ended before it could be killed (exit code {proc.exitcode})"
    os.kill(proc.pid, signal.SIGKILL)  # mid-run: one input done, the next in flight
    proc.join()


def _check_resumed(out: Path) -> None:
    rows = read_manifest(out / "manifest.jsonl")
    assert sorted(r["status"] for r in rows if r["kind"] == "input") == ["ok", "ok", "rejected"]
    dataset = StreamingDataset(str(out / "shards"))
    keys = [dataset[i]["key"] for i in range(len(dataset))]
    assert len(keys) == len(set(keys)) == 2
    assert not list((out / "staging").glob(".*partial*")) and not list(out.glob(".shards*"))


@pytest.fixture()
def kill_corpus(tmp_path: Path) -> Path:
    videos = tmp_path / "videos"
    make_carphone(videos / "a.mp4", frames=75)
    make_carphone(videos / "b.mp4", frames=80)
    (videos / "c.mp4").write_bytes(b"")
    return videos


def test_resumes_after_kill_without_duplicates(kill_corpus: Path, tmp_path: Path) -> None:
    from lipsync.prepare.__main__ import run

    out = tmp_path / "out"
    cfg = prepare_config(kill_corpus, out)
    _kill_mid_run(run, (cfg,), out / "staging")
    assert not (out / "manifest.jsonl").exists()  # killed before the end
    summary = run(cfg)
    assert 0 < summary["curated"] < 3  # the first input was not redone
    _check_resumed(out)


@pytest.mark.slow
def test_cli_resumes_after_kill_with_parallel_workers(kill_corpus: Path, tmp_path: Path) -> None:
    """The real command with litdata.map / litdata.optimize workers, killed and started again."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lipsync.prepare", f"input={kill_corpus}", f"output={out}", "crop.resolution=64",
           "filters.min_face.min_size=32", "segment_frames=50", "progress=false", "workers=2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "GLOG_minloglevel": "2"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not list((out / "staging").glob("*/record.json")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the command and its litdata workers
    proc.wait()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    _check_resumed(out)


def test_preview_writes_mask_overlays_for_a_video_and_for_shards(corpus, tmp_path: Path) -> None:
    import cv2

    from lipsync.prepare.preview import preview

    ensure_assets()
    png = preview(asset_path("carphone_pristine.mp4"), tmp_path / "video.png", frames=4, resolution=96)
    image = cv2.imread(str(png))
    assert image.shape == (96, 4 * 96, 3)
    # the mask rectangle is drawn in green over the lower middle of each tile
    tile = image[:, :96].astype(int)
    green = (tile[:, :, 1] - tile[:, :, [0, 2]].max(axis=2)) > 40
    ys, xs = np.nonzero(green)
    assert ys.mean() > 48 and 30 < xs.mean() < 66
    png = preview(corpus["output"] / "shards", tmp_path / "shards.png", mask="fixed", frames=2)
    assert cv2.imread(str(png)).shape == (128, 256, 3)  # two 64 px crops, drawn at 2x (at least 128 px)
    png = preview(corpus["output"] / "shards", tmp_path / "steady.png", mask="steady", frames=1)  # on adaptive
    assert cv2.imread(str(png)).shape == (128, 128, 3)


def test_multi_node_split_and_node_zero_packs(kill_corpus: Path, tmp_path: Path, monkeypatch) -> None:
    """litdata's node variables split the inputs; node 0 waits for every record, then packs once."""
    from lipsync.prepare.__main__ import run

    out = tmp_path / "out"
    cfg = prepare_config(kill_corpus, out)
    monkeypatch.setenv("DATA_OPTIMIZER_NUM_NODES", "2")
    monkeypatch.setenv("DATA_OPTIMIZER_NODE_RANK", "1")
    assert run(cfg) == {"node_rank": 1, "curated": 3}  # 3 pending, this node took its stride (b.mp4)
    assert [p.parent.name.split("-")[0] for p in (out / "staging").glob("*/record.json")] == ["b"]
    assert not (out / "shards").exists()
    monkeypatch.setenv("DATA_OPTIMIZER_NODE_RANK", "0")
    summary = run(cfg)
    assert summary["curated"] == 2 and summary["packed"] and summary["status"] == {"ok": 2, "rejected": 1}
    _check_resumed(out)
