"""Real faces (issue 26): the committed split and its cutter, the speech filter, close-up face detection,
the face-mesh lip-sync metrics (closed form first), and the protocol's pieces; on the real corpus where
``../shared/realfaces`` is present."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from lipsync import media
from lipsync.data.faces import MediaPipeFaces, _detections
from lipsync.evaluate import mouth, realface
from lipsync.evaluate.reconstruction import EditRegion
from lipsync.prepare import split
from lipsync.prepare.filters import ClipData, SpeechFilter

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "realfaces"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"real-face corpus absent: {CORPUS} (issue 26)")


# --- the face-mesh metrics, closed form -------------------------------------------------------------


def mesh(gap: float, iod: float = 100.0, lips_dx: float = 0.0) -> np.ndarray:
    """478 points at the origin but the eye corners ``iod`` apart, the inner lips ``gap`` apart, and the
    lip points moved by ``lips_dx``."""
    p = np.zeros((478, 2))
    p[33], p[263] = (0.0, 0.0), (iod, 0.0)
    for up, down in mouth.INNER_LIP_PAIRS:
        p[up], p[down] = (50.0, 80.0), (50.0, 80.0 + gap)
    from lipsync.data.faces import MEDIAPIPE_478

    p[MEDIAPIPE_478.mouth_idx, 0] += lips_dx
    return p


def test_opening_is_the_inner_lip_gap_over_the_eye_distance() -> None:
    assert mouth.opening(mesh(12.0)) == pytest.approx(0.12)
    assert mouth.opening(mesh(12.0, iod=200.0)) == pytest.approx(0.06)
    batch = np.stack([mesh(g) for g in (0.0, 5.0, 20.0)])
    np.testing.assert_allclose(mouth.opening(batch), [0.0, 0.05, 0.2])
    assert np.isnan(mouth.opening(np.full((478, 2), np.nan)))


def test_lmd_is_the_lip_shift_over_the_eye_distance_and_skips_faceless_frames() -> None:
    truth = np.stack([mesh(10.0)] * 3)
    moved = np.stack([mesh(10.0, lips_dx=4.0)] * 3)
    assert mouth.lmd(moved, truth) == pytest.approx(0.04)
    assert mouth.lmd(truth, truth) == 0.0
    moved[1] = np.nan
    assert mouth.lmd(moved, truth) == pytest.approx(0.04)


def test_correlation_uses_common_finite_frames() -> None:
    a = np.array([0.0, 1.0, 2.0, np.nan, 4.0, 5.0])
    assert mouth.correlation(a, 2 * a + 1) == pytest.approx(1.0)
    assert mouth.correlation(a, -a) == pytest.approx(-1.0)
    assert mouth.correlation(a, a[:4]) == pytest.approx(1.0)  # the shorter length
    assert np.isnan(mouth.correlation(a, np.ones(6)))  # constant
    assert np.isnan(mouth.correlation(a[:2], a[:2]))  # too few frames


def test_cross_scores_read_sync_from_the_driver_and_leak_from_the_source() -> None:
    t = np.arange(40)
    src_open, drv_open = 5 + 4 * np.sin(t / 3.0), 5 + 4 * np.cos(t / 1.7)
    source = realface.Clip("a", np.zeros((40, 8, 8, 3), np.uint8), None, np.stack([mesh(g) for g in src_open]))
    driver = realface.Clip("b", np.zeros((40, 8, 8, 3), np.uint8), None, np.stack([mesh(g) for g in drv_open]))
    follows_driver = realface.cross_scores(np.stack([mesh(g) for g in drv_open]), source, driver)
    assert follows_driver["sync"] == pytest.approx(1.0)
    assert follows_driver["leak"] == pytest.approx(follows_driver["chance"])
    copies_source = realface.cross_scores(source.landmarks, source, driver)
    assert copies_source["leak"] == pytest.approx(1.0) and copies_source["sync"] == pytest.approx(
        copies_source["chance"])


def test_pair_order_never_drives_a_clip_with_its_own_sound() -> None:
    assert realface.pair_order(["a", "b", "c"]) == [(0, 1), (1, 2), (2, 0)]
    with pytest.raises(ValueError, match="at least 2"):
        realface.pair_order(["a"])


def test_table_summary_leaves_out_nan_clips_and_bootstraps_the_mean() -> None:
    table = realface.Table()
    for clip, value in (("a", 0.2), ("b", 0.4), ("c", float("nan")), ("d", 0.6)):
        table.add("cross/model", clip, {"sync": value})
    row = table.summary(resamples=200)["cross/model"]["sync"]
    assert row["n"] == 3 and row["mean"] == pytest.approx(0.4)
    assert 0.2 <= row["interval"][0] <= 0.4 <= row["interval"][1] <= 0.6


def test_still_mouth_pastes_the_first_frames_crop_and_nothing_outside_the_region() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    region = EditRegion(np.array([[8, 8, 56, 56]] * 3, np.float64), np.array([[20, 30, 44, 50]] * 3, np.float64))
    out = realface.still_mouth(frames, region, 48)
    assert np.array_equal(out[0], realface.still_mouth(frames[:1], EditRegion(region.crops[:1], region.masks[:1]),
                                                        48)[0])
    # frames 1 and 2 get frame 0's mouth: the same pixels in the mask's core, their own far from it
    np.testing.assert_array_equal(out[1][36:44, 28:36], out[0][36:44, 28:36])
    np.testing.assert_array_equal(out[2][:8], frames[2][:8])


# --- the split ------------------------------------------------------------------------------------


def test_committed_split_holds_out_whole_people_and_names_every_corpus_file() -> None:
    committed = split.load_split(ROOT / "data" / "realfaces" / "split.json")
    held = {f for fs in committed["heldout_people"].values() for f in fs}
    train = {f for fs in committed["train_people"].values() for f in fs}
    assert len(committed["heldout_people"]) >= 3 and not held & train
    assert committed["tail_fraction"] == 0.2
    if CORPUS.is_dir():
        assert held | train == {p.name for p in CORPUS.glob("*.mp4")}


def test_split_rejects_a_file_listed_twice(tmp_path: Path) -> None:
    bad = {"corpus": ".", "tail_fraction": 0.2, "heldout_people": {"a": ["x.mp4"]}, "train_people": {"b": ["x.mp4"]}}
    (tmp_path / "s.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="listed twice"):
        split.load_split(tmp_path / "s.json")


def test_tail_start_keeps_the_last_fifth() -> None:
    assert split.tail_start(100, 0.2) == 80
    assert split.tail_start(201, 0.2) == 161  # 40.2 frames of tail round to 40


def test_cut_writes_head_and_tail_whose_frames_and_sound_add_up(tmp_path: Path) -> None:
    rate, fps, n = 16000, 25, 50
    frames = np.stack([np.full((32, 32, 3), 5 * i, np.uint8) for i in range(n)])
    audio = np.sin(np.arange(n * rate // fps) / 7.0).astype(np.float32) * 0.3
    corpus = tmp_path / "corpus"
    media.write_video(corpus / "v.mp4", frames, fps, audio=audio, audio_rate=rate, crf=0)
    parts = [split.Part("train", "p", "v.mp4", 0, 40, fps), split.Part("tail", "p", "v.mp4", 40, 50, fps)]
    head, tail = (split.cut(p, corpus, tmp_path / "out") for p in parts)
    assert media.probe(head).num_frames == 40 and media.probe(tail).num_frames == 10
    assert abs(int(media.read_frames(tail)[0].mean()) - 200) <= 2  # the tail starts at frame 40
    assert media.read_audio(head)[0].size / rate == pytest.approx(1.6, abs=0.05)
    assert media.read_audio(tail)[0].size / rate == pytest.approx(0.4, abs=0.07)


# --- curation on real video -----------------------------------------------------------------------


def test_speech_filter_drops_silence_and_sparse_sound_keeps_speech_like_sound() -> None:
    crops = np.zeros((100, 8, 8, 3), np.uint8)
    samples = 100 * 640
    t = np.arange(samples) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 200 * t)
    syllables = tone * (np.sin(2 * np.pi * 4 * t) > -0.3)  # on ~60 % of the time, 4 syllables per second
    sparse = tone * (t < 0.4)  # 10 % of the clip
    f = SpeechFilter()
    assert "under -60 dBFS" in f(ClipData(crops, None, np.zeros(samples, np.float32)))
    assert "% of frames" in f(ClipData(crops, None, sparse.astype(np.float32)))
    assert f(ClipData(crops, None, syllables.astype(np.float32))) is None


def test_full_range_detector_finds_a_face_that_fills_the_frame() -> None:
    """A face filling the frame (as in a 224 px VoxCeleb2 crop) defeats the full-range detector; the padded
    second look finds it, at the right place."""
    from mediapipe.python.solutions import face_detection
    from skimage import data

    img = data.astronaut()
    close_up = cv2.resize(img[30:210, 140:320], (224, 224))
    with face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5) as detector:
        assert _detections(detector, close_up) == []  # what broke curation of voxceleb2_pcavs_00010
        (box,) = MediaPipeFaces._detect_all(detector, close_up)
        whole = _detections(detector, img)[0]
    expected = (whole - [140, 30, 140, 30]) * 224 / 180  # the astronaut's box in the close-up's pixels
    assert np.abs(box - expected).max() < 20


# --- on the real corpus ---------------------------------------------------------------------------


@needs_corpus
def test_mouth_opening_separates_the_true_mouth_from_shifted_and_other_mouths() -> None:
    faces = MediaPipeFaces(mesh_every=1)
    a = mouth.track_video(CORPUS / "voxceleb2_pcavs_00086.mp4", 100, faces).landmarks
    b = mouth.track_video(CORPUS / "voxceleb2_pcavs_00373.mp4", 100, faces).landmarks
    written = media.as_written(media.read_frames(CORPUS / "voxceleb2_pcavs_00086.mp4", stop=100), 25, crf=18)
    again = mouth.track_frames(written, faces).landmarks
    oa = mouth.opening(a)
    assert mouth.correlation(mouth.opening(again), oa) > 0.95
    assert abs(mouth.correlation(oa[12:], oa[:-12])) < 0.4
    assert abs(mouth.correlation(oa, mouth.opening(b))) < 0.4
    assert mouth.lmd(again, a) < 0.02


# --- per-person fine-tuning (issue 27) ------------------------------------------------------------


def _talking_video(path: Path, n: int = 50, fps: int = 25, rate: int = 16000) -> Path:
    frames = np.stack([np.full((32, 32, 3), 4 * i, np.uint8) for i in range(n)])
    audio = (0.3 * np.sin(np.arange(n * rate // fps) / 5.0)).astype(np.float32)
    return media.write_video(path, frames, fps, audio=audio, audio_rate=rate, crf=0)


def test_finetune_cuts_the_last_fifth_off_and_refuses_a_tail_longer_than_the_head(tmp_path: Path) -> None:
    from lipsync import finetune

    video = _talking_video(tmp_path / "person.mp4")
    person = finetune.cut_person(video, tmp_path / "out", 0.2)
    assert media.probe(person.head).num_frames == 40 and media.probe(person.tail).num_frames == 10
    assert finetune.cut_person(video, tmp_path / "out", 0.0) == finetune.Person(video, None)
    with pytest.raises(ValueError, match="holdout=0.6"):
        finetune.cut_person(video, tmp_path / "out", 0.6)


def test_finetune_curates_at_the_base_models_crop_and_trains_from_its_weights(tmp_path: Path) -> None:
    from lipsync import finetune

    crop = finetune.base_crop(ROOT / "models" / "showcase")
    prep = finetune.prepare_command(Path("head.mp4"), Path("p"), crop, "w.pt")
    assert "crop.resolution=32" in prep and "crop.scale=0.8" in prep and "crop.shift_y=0.15" in prep
    cfg = {"experiment": "realface", "base": "models/realface", "steps": 250, "batch_size": 4, "lr": 2e-4,
           "threads": 1}
    cmd = finetune.train_command(cfg, Path("p/shards"), tmp_path / "runs" / "finetune")
    assert {"experiment=realface", "init_from=models/realface", "trainer.max_steps=250",
            "data.shards=p/shards", f"paths.log_dir={tmp_path / 'runs'}", "name=finetune"} <= set(cmd)
    with pytest.raises(ValueError, match="steps=0"):
        finetune.train_command({**cfg, "steps": 0}, Path("p"), tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json missing"):
        finetune.base_crop(tmp_path)


def test_finetune_train_command_composes(tmp_path: Path) -> None:
    """The command's overrides are valid for the training config (Hydra composes them)."""
    from hydra import compose, initialize_config_dir

    from lipsync import finetune

    cfg = {"experiment": "realface", "base": "models/realface", "steps": 7, "batch_size": 2, "lr": 1e-4,
           "threads": 1}
    overrides = finetune.train_command(cfg, Path("p/shards"), tmp_path / "runs" / "ft")[3:]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        composed = compose("train", overrides=overrides)
    assert composed.trainer.max_steps == 7 and composed.model.scheduler.T_max == 7
    assert composed.init_from == "models/realface" and composed.data.batch_size == 2


@pytest.mark.slow  # ~1 min of MediaPipe and Inception on one core
def test_realface_protocol_end_to_end_on_real_faces_with_a_tiny_model(tmp_path: Path, save_tiny_pipeline) -> None:
    """`python -m lipsync.evaluate.realface`: a tiny random pipeline on two real face clips with speech (the
    astronaut and carphone): every row is scored and the baselines order as they must."""
    import torch
    from hydra import compose, initialize_config_dir

    from _data_corpus import make_astronaut, make_carphone
    from lipsync.cli import config_dir

    clips = tmp_path / "clips"
    make_astronaut(clips / "astronaut.mp4", seconds=1.2)
    make_carphone(clips / "carphone.mp4", frames=36)
    ckpt = save_tiny_pipeline(tmp_path / "ckpt")
    overrides = [f"clips={clips}", f"ckpt={ckpt}", f"output={tmp_path / 'gen'}", "+options.num_steps=1",
                 "+options.detect_generated=false", "fid_stride=6", "bootstrap.resamples=50",
                 "bootstrap.frechet_resamples=5"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="evaluate_realface", overrides=overrides)
    from omegaconf import OmegaConf

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        metrics = realface.run(OmegaConf.to_container(cfg, resolve=True), tmp_path / "run")
    finally:
        torch.set_num_threads(threads)
    s = metrics["summary"]
    assert set(s) == {"self/model", "self/ceiling_32px", "self/ceiling_16px", "self/still_mouth", "cross/model",
                      "sanity/true_video"}
    assert s["sanity/true_video"]["written"]["n"] == 2  # (a panned photo's mouth does not move: no r near 1)
    assert s["self/ceiling_32px"]["psnr"]["mean"] > s["self/ceiling_16px"]["psnr"]["mean"]
    assert s["self/ceiling_32px"]["lmd"]["mean"] < s["self/still_mouth"]["lmd"]["mean"]
    assert s["cross/model"]["sync"]["n"] == 2 and set(metrics["fid"]) == {
        "model", "ceiling_32px", "ceiling_16px", "still_mouth"}
    assert any("LPIPS not computed" in line and "lpips.backbone" in line for line in metrics["missing_weights"])
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["protocol"]["preset"] == "realface"
    assert (tmp_path / "run" / "frames.png").exists()
    assert sorted(p.name for p in (tmp_path / "gen" / "cross").iterdir()) == [
        "astronaut__carphone.mp4", "carphone__astronaut.mp4"]


def test_ssim_and_psnr_in_the_mask_are_the_same_on_the_cut_around_it() -> None:
    from lipsync.evaluate.reconstruction import masked_psnr, masked_ssim

    rng = np.random.default_rng(1)
    truth = rng.integers(0, 255, (2, 96, 128, 3), dtype=np.uint8)
    gen = np.clip(truth.astype(int) + rng.integers(-30, 30, truth.shape), 0, 255).astype(np.uint8)
    boxes = np.array([[40.0, 30.0, 70.0, 60.0], [44.0, 33.0, 75.0, 66.0]])
    whole = render_masks_of(boxes, 96, 128)
    (g, t), cut_boxes = realface.around_masks((gen, truth), boxes)
    assert g.shape[1:3] == (66 + 8 - 22, 75 + 8 - 32)
    cut = render_masks_of(cut_boxes, *t.shape[1:3])
    np.testing.assert_allclose(masked_ssim(g, t, cut), masked_ssim(gen, truth, whole), rtol=1e-5)
    np.testing.assert_allclose(masked_psnr(g, t, cut), masked_psnr(gen, truth, whole), rtol=1e-6)


def render_masks_of(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    from lipsync.data.masks import render_masks

    return render_masks(boxes, h, w)[:, 0]


def test_curation_report_names_every_input_with_what_was_kept_and_why(tmp_path: Path) -> None:
    from lipsync.prepare.report import report

    rows = [
        {"kind": "input", "video_id": "a-1", "path": "/x/a.mp4", "status": "ok", "frames": 200, "face_found": 1.0,
         "face_tracks": [{"frames": 200, "median_box": [0, 0, 100, 144]}], "shot_cuts": [120], "segments": 2},
        {"kind": "clip", "video_id": "a-1", "status": "kept", "reason": None},
        {"kind": "clip", "video_id": "a-1", "status": "dropped", "reason": "clip shorter than 2 s"},
        {"kind": "input", "video_id": "b-2", "path": "/x/b.mp4", "status": "rejected", "frames": 90,
         "face_found": 0.0, "face_tracks": [], "reason": "no face found in any frame"},
    ]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = report(tmp_path / "manifest.jsonl")
    assert "| a.mp4 | ok | 200 | 120 | 1.0 | 1 | 1 / 1 | 2 | clip shorter than 2 s |" in text
    assert "| b.mp4 | rejected | 90 | - | 0.0 | 0 | 0 / 0 | 0 | no face found in any frame |" in text
    assert text.rstrip().endswith("2 inputs: 1 ok, 1 rejected; 2 segments stored.")


def test_finetune_report_sets_base_beside_fine_tuned_and_the_baselines() -> None:
    from lipsync.finetune import report

    def rows(model: float) -> dict:
        return {"self/model": {"opening_r": model, "lmd": 0.1, "ssim": 0.7, "psnr": 20.0},
                "self/ceiling_48px": {"opening_r": 0.9, "lmd": 0.02, "ssim": 0.93, "psnr": 32.0},
                "cross/model": {"sync": model, "leak": 0.0, "chance": -0.3}}

    text = report(rows(0.1), rows(0.8), 69)
    assert "| held-out tail, 69 frames | base | fine-tuned | ceiling_48px |" in text
    assert "| opening r | 0.100 | 0.800 | 0.900 |" in text and "| sync | 0.100 | 0.800 | - |" in text


def test_split_command_names_a_missing_corpus_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "lipsync.prepare.split", str(ROOT / "data" / "realfaces" / "split.json"),
                           str(tmp_path / "out"), "--corpus", str(tmp_path / "absent")], capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0
    assert "lipsync-prepare-split: error:" in done.stderr and "absent" in done.stderr


def test_select_clips_leaves_out_clips_over_max_side_and_names_them(tmp_path: Path) -> None:
    for name, (h, w) in {"a.mp4": (48, 64), "b.mp4": (96, 40), "c.mp4": (40, 130)}.items():
        media.write_video(tmp_path / name, np.zeros((3, h, w, 3), np.uint8), 25)
    (tmp_path / "notes.txt").write_text("not a clip")
    kept, left_out = realface.select_clips(tmp_path, max_side=96)
    assert [p.name for p in kept] == ["a.mp4", "b.mp4"] and left_out == ["c.mp4"]  # 96 is kept, 130 is not
    kept, left_out = realface.select_clips(tmp_path)
    assert [p.name for p in kept] == ["a.mp4", "b.mp4", "c.mp4"] and left_out == []


def test_first_frames_cuts_video_and_sound_and_keeps_shorter_clips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    long, short = tmp_path / "in" / "long.mp4", tmp_path / "in" / "short.mp4"
    long.parent.mkdir()
    sound = rng.uniform(-0.5, 0.5, 16000).astype(np.float32)  # 1 s under 25 frames
    media.write_video(long, rng.integers(0, 255, (25, 32, 48, 3), dtype=np.uint8), 25, sound, 16000)
    media.write_video(short, np.zeros((3, 32, 48, 3), np.uint8), 25)
    cut = realface.first_frames([long, short], 10, tmp_path / "out")
    assert cut[0] == tmp_path / "out" / "first10" / "long.mp4" and cut[1] == short
    info = media.probe(cut[0])
    assert info.num_frames == 10 and (info.width, info.height) == (48, 32)
    audio, rate = media.read_audio(cut[0], sample_rate=16000)
    assert 0.4 - 1e-3 <= len(audio) / rate <= 0.4 + 1024 / 16000  # 10 frames' sound, AAC pads < 1 frame
