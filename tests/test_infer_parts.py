"""The model-free parts of inference, each against closed-form expectations (issue 5)."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from lipsync.data.faces import IBUG_68, crop_square
from lipsync.infer.frames import FrameSource, scan
from lipsync.infer.lengths import num_output_frames, source_indices, source_positions
from lipsync.infer.paste import crop_to_frame, dilate_box, feathered_alpha, paste_back
from lipsync.infer.segments import OverlapBlender, blend_weights, frame_noise, plan_segments
from lipsync.infer.silence import mute_frames, silent_frames
from lipsync.infer.tracking import FaceTrackSummary, edit_weights, hold_nearest, runs, subset_layout
from lipsync.media import read_frames
from lipsync.models.audio import audio_windows, frame_windows


# --- lengths ----------------------------------------------------------------------------------------
def test_longer_video_is_truncated() -> None:
    np.testing.assert_array_equal(source_indices(120, 50), np.arange(50))
    assert num_output_frames(32000, 16000, 30000 / 1001) == 60  # 2 s at 29.97 fps = 59.94 -> 60


@pytest.mark.parametrize("n_src", [2, 5, 17])
def test_ping_pong_stays_in_range_and_moves_at_most_one_frame(n_src: int) -> None:
    idx = source_indices(n_src, 200, junction=4)
    assert idx.min() >= 0 and idx.max() <= n_src - 1
    assert np.abs(np.diff(idx)).max() <= 1
    np.testing.assert_array_equal(idx[: n_src // 2], np.arange(n_src // 2))  # starts as plain playback


def test_ping_pong_junctions_are_smoothed() -> None:
    sharp, smooth = source_indices(10, 60, junction=0), source_indices(10, 60, junction=3)
    assert np.all(source_indices(10, 60, junction=3) == source_indices(10, 60, junction=2))
    # a sharp turn reverses in one frame (x, x+1, x); a smoothed one decelerates (holds) first
    reversals = lambda i: int(np.sum((np.diff(i)[:-1] * np.diff(i)[1:]) < 0))  # noqa: E731
    assert reversals(sharp) > 0 and reversals(smooth) == 0
    # the continuous position has a continuous velocity: |second difference| <= 1/junction
    pos = source_positions(10, 60, junction=4)
    assert np.abs(np.diff(pos, 2)).max() <= 1 / 4 + 1e-9


# --- segments ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 16, 17, 40, 100])
def test_segments_cover_every_frame_with_paper_overlap(n: int) -> None:
    segs = plan_segments(n, 16, 4)
    assert segs[0].start == 0 and segs[-1].stop == n
    assert all(len(s) == min(16, n) for s in segs)
    assert all(b.start < a.stop for a, b in zip(segs, segs[1:]))  # no gaps
    assert all(s.shared == 4 for s in segs[1:-1])
    if len(segs) > 1:
        assert segs[-1].shared >= 4 and segs[-1].shared == segs[-2].stop - segs[-1].start


def test_blender_cross_fades_linearly_and_releases_each_frame_once() -> None:
    n = 40
    segs = plan_segments(n, 16, 4)
    blender, released, values = OverlapBlender(), [], np.zeros(n)
    for k, seg in enumerate(segs):
        result = np.full((len(seg), 1), float(k))  # window k says "k" everywhere
        nxt = segs[k + 1].start if k + 1 < len(segs) else None
        start, stop, out = blender.push(seg, result, nxt)
        released.append((start, stop))
        values[start:stop] = out[:, 0]
    assert [r[0] for r in released] == [0] + [r[1] for r in released[:-1]] and released[-1][1] == n
    w = blend_weights(4)
    np.testing.assert_allclose(w, [0.2, 0.4, 0.6, 0.8])
    s1 = segs[1]
    np.testing.assert_allclose(values[s1.start : s1.start + 4], w * 1 + (1 - w) * 0)  # exact linear ramp
    np.testing.assert_allclose(values[: s1.start], 0)


def test_skipped_windows_release_nothing_to_paste() -> None:
    segs = plan_segments(40, 16, 4)
    blender = OverlapBlender()
    _, _, out0 = blender.push(segs[0], np.ones((16, 1)), segs[1].start)
    _, _, out1 = blender.push(segs[1], None, segs[2].start)
    assert out0 is not None and out1 is None


def test_noise_is_a_function_of_the_output_frame_only() -> None:
    a = frame_noise(7, range(10, 16), (3, 4, 4))
    b = frame_noise(7, [12, 13], (3, 4, 4))
    torch.testing.assert_close(a[2:4], b)  # a shared frame gets the same noise in both windows
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(frame_noise(8, [10], (3, 4, 4))[0], a[0])


# --- tracking ---------------------------------------------------------------------------------------
def test_edit_weights_fade_linearly_around_pass_through_frames() -> None:
    editable = np.ones(20, bool)
    editable[8:11] = False
    w = edit_weights(editable, fade=3)
    np.testing.assert_allclose(w[8:11], 0)
    np.testing.assert_allclose(w[4:8], [1.0, 0.75, 0.5, 0.25])  # d / (fade + 1)
    np.testing.assert_allclose(w[11:15], [0.25, 0.5, 0.75, 1.0])
    assert edit_weights(np.ones(5, bool), 3).min() == 1 and edit_weights(np.zeros(5, bool), 3).max() == 0


def test_short_gaps_fill_long_gaps_pass_through() -> None:
    keep, layout = subset_layout(IBUG_68)
    n = 30
    boxes = np.tile(np.array([10, 10, 50, 50], np.float32), (n, 1)) + np.arange(n, dtype=np.float32)[:, None]
    lms = np.random.default_rng(0).uniform(0, 60, (n, len(keep), 2)).astype(np.float32)
    boxes[5:8], lms[5:8] = np.nan, np.nan  # 3 frames: a detector blink
    boxes[15:25], lms[15:25] = np.nan, np.nan  # 10 frames: a real cut-away
    track = FaceTrackSummary(boxes, lms, layout, ~np.isnan(boxes).any(1)).filled(max_gap=4)
    assert track.found[5:8].all() and not track.found[15:25].any()
    np.testing.assert_allclose(track.boxes[6], [16, 16, 56, 56])  # linear between frames 4 and 8
    assert runs(~track.found) == [(15, 25)]
    held = hold_nearest(track.boxes, track.found)
    np.testing.assert_array_equal(held[16], track.boxes[14])
    np.testing.assert_array_equal(held[24], track.boxes[25])


# --- paste ------------------------------------------------------------------------------------------
def test_alpha_is_zero_outside_the_boxes_and_one_deep_inside() -> None:
    boxes = [np.array([10, 10, 40, 30.0]), np.array([30, 20, 60, 50.0])]
    alpha = feathered_alpha(boxes, (0, 0, 70, 60), feather=5)
    ys, xs = np.mgrid[0:60, 0:70] + 0.5
    inside = np.zeros_like(alpha, bool)
    for b in boxes:
        inside |= (xs >= b[0]) & (xs < b[2]) & (ys >= b[1]) & (ys < b[3])
    assert alpha[~inside].max() == 0
    assert alpha[20, 25] == 1 and alpha[40, 45] == 1
    assert 0 < alpha[10, 25] < 1  # on the border ramp


def test_paste_round_trip_and_untouched_outside() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    crop = np.array([20, 8, 52, 40], np.float64)  # a 32 px square at integer offset
    image = crop_square(frame, crop, 32)  # scale 1: exact pixels
    np.testing.assert_array_equal(image, frame[8:40, 20:52])
    box = dilate_box(crop_to_frame(np.array([8, 12, 24, 28.0]), crop, 32), 0.1)
    same = paste_back(frame, image.astype(np.float32), crop, [box], feather=3)
    np.testing.assert_array_equal(same.frame, frame)  # pasting the source's own crop changes nothing
    other = paste_back(frame, np.zeros((32, 32, 3), np.float32), crop, [box], feather=3)
    x0, y0, x1, y1 = other.region
    outside = np.ones(frame.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(other.frame[outside], frame[outside])
    assert (other.frame[y0:y1, x0:x1] != frame[y0:y1, x0:x1]).any()
    np.testing.assert_array_equal(paste_back(frame, image * 0, crop, [box], 3, weight=0).frame, frame)


def test_poisson_paste_removes_a_colour_offset_and_keeps_the_detail() -> None:
    """Poisson blending: a generated crop that is the source plus a constant colour offset (a visible box)
    comes back as the source; a crop carrying new detail keeps that detail's gradients inside the region
    and the source's values on its border; outside, the source, bit for bit."""
    from lipsync.infer.paste import paste_crop, poisson_paste

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:80]
    frame = np.clip(np.stack([90 + x, 60 + y, 120 + 0 * x], -1) + rng.normal(0, 3, (64, 80, 3)), 0, 255)
    frame = frame.astype(np.uint8)
    crop = np.array([20, 8, 52, 40], np.float64)  # a 32 px square at integer offset: scale 1
    box = crop_to_frame(np.array([4, 4, 28, 28.0]), crop, 32)  # frame pixels 24..48 x 12..36
    image = crop_square(frame, crop, 32).astype(np.float64)
    shifted = np.clip(image + np.array([-12.0, 5.0, 20.0]), 0, 255)  # a colour cast over the whole crop
    out = poisson_paste(frame, shifted, crop, [box])
    inner = (slice(16, 32), slice(28, 44))
    cast = np.abs(out.frame[inner].astype(float) - frame[inner]).mean()
    assert cast < 1.5  # rounding; the feathered paste keeps the cast (12-20 levels per channel)
    feathered = paste_crop(frame, shifted, crop, box, None, 32, blend="feather")
    assert np.abs(feathered.frame[inner].astype(float) - frame[inner]).mean() > 10

    mouth = image.copy()
    mouth[14:18, 10:22] = 20.0  # a dark mouth slit, new detail the source does not have
    out = poisson_paste(frame, mouth, crop, [box])
    expected = frame.copy()
    expected[22:26, 30:42] = 20
    # Exact (but for rounding) when the detail lies a few pixels inside the border: within ~2 px of it,
    # OpenCV's guidance field takes the source's gradients, so detail there blends into the source.
    assert np.abs(out.frame.astype(int) - expected).max() <= 1
    outside = np.ones(frame.shape[:2], bool)
    outside[12:36, 24:48] = False
    np.testing.assert_array_equal(out.frame[outside], frame[outside])
    np.testing.assert_array_equal(out.region, [24, 12, 48, 36])
    np.testing.assert_array_equal(poisson_paste(frame, image, crop, [box], weight=0).frame, frame)
    half = poisson_paste(frame, mouth, crop, [box], weight=0.5).frame[22:26, 30:42].astype(float).mean()
    assert abs(half - (20 + frame[22:26, 30:42].mean()) / 2) < 1.0
    with pytest.raises(ValueError, match="paste_blend"):
        paste_crop(frame, image, crop, box, None, 32, blend="alpha")


# --- silence ----------------------------------------------------------------------------------------
def test_silence_needs_quiet_lasting_min_duration() -> None:
    rate, fps = 16000, 25
    t = np.arange(4 * rate) / rate
    wave = 0.3 * np.sin(2 * np.pi * 220 * t)
    wave[int(1.0 * rate) : int(2.0 * rate)] = 0  # a pause of 1 s
    wave[int(3.0 * rate) : int(3.1 * rate)] = 0  # a gap between words: 0.1 s
    silent = silent_frames(wave, rate, fps, 100, min_duration=0.3)
    assert silent[27:48].all() and not silent[:23].any() and not silent[52:].any()
    muted = mute_frames(wave, rate, fps, silent)
    assert np.all(muted[int(27 / fps * rate) : int(48 / fps * rate)] == 0)
    np.testing.assert_array_equal(
        muted[: int(23 / fps * rate)], wave[: int(23 / fps * rate)].astype(np.float32)
    )


# --- audio windows ----------------------------------------------------------------------------------
def test_audio_windows_match_training_at_25_fps_and_follow_time_at_other_rates() -> None:
    feats = torch.randn(150, 6)
    frames = np.arange(3, 40)
    torch.testing.assert_close(
        audio_windows(feats, frames, 25.0), frame_windows(feats, len(frames), 2, start_frame=3)
    )
    w30 = audio_windows(feats, np.array([30]), 30.0)  # t = 1 s -> step 50, window starts at 50 - 4
    torch.testing.assert_close(w30[0], feats[46:56])
    assert audio_windows(feats, np.array([0]), 30.0)[0, :4].abs().max() == 0  # before the audio: zeros


# --- random access to frames ------------------------------------------------------------------------
def _gop_video(path, frames: np.ndarray, gop: int) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"g": str(gop), "crf": "10"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def test_frame_source_serves_ping_pong_order_exactly(tmp_path) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (30, 32, 48, 3), dtype=np.uint8)
    path = tmp_path / "gop.mp4"
    _gop_video(path, frames, gop=6)
    decoded = read_frames(path)
    pts = np.array([p for p, _ in scan(path)])
    source = FrameSource(path, pts, capacity=8)
    order = source_indices(len(decoded), 100, junction=2)
    assert all(np.array_equal(source[int(i)], decoded[i]) for i in order)
    assert source.seeks < 20  # backward runs reuse the decoded window instead of seeking per frame
    source.close()


def test_segment_boundaries_mark_where_the_windows_that_made_a_frame_change() -> None:
    from lipsync.infer.segments import segment_boundaries

    hard = segment_boundaries(plan_segments(48, 16, 0), 48)
    assert np.flatnonzero(hard).tolist() == [15, 31]  # 15 -> 16 and 31 -> 32
    faded = segment_boundaries(plan_segments(40, 16, 4), 40)
    # windows [0, 16), [12, 28), [24, 40): cross-fades over 12-15 and 24-27 start and end there
    assert np.flatnonzero(faded).tolist() == [11, 15, 23, 27]
