"""Mouth opening measured from pixels, and the sync / leak scores, on the renderer's own videos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lipsync import media
from lipsync.data.faces import crop_square, square_around
from lipsync.stats import pearson
from lipsync.synth import corpus, measure, render, speech

pytestmark = pytest.mark.usefixtures("espeak")  # fails loudly without espeak-ng (tests/conftest.py)


@pytest.fixture(scope="module")
def videos() -> list[corpus.SynthSample]:
    """Four people, 4 s each at 96 px (with head motion, blinks and speech from espeak-ng)."""
    return [corpus.synth_sample(seed=11, index=i, seconds=4.0, size=96) for i in range(4)]


# --- closed form ---------------------------------------------------------------------------------------


def test_area_of_painted_interior_and_teeth_is_counted_exactly() -> None:
    skin = np.array(render.SKIN_TONES[4], np.uint8)
    frame = np.broadcast_to(skin, (100, 100, 3)).copy()
    box = np.array([10.0, 0.0, 90.0, 100.0])  # mouth region centre (50, 75), radii (23.2, 20) pixels
    assert measure.measure_opening(frame, box)[0] == 0.0
    frame[70:76, 40:60] = render.MOUTH_INTERIOR  # 120 interior pixels
    frame[66:70, 40:60] = render.TEETH  # 80 teeth pixels
    expected = 200 / (80 * 100) * measure.AREA_TO_OPENING
    assert measure.measure_opening(frame, box)[0] == pytest.approx(expected)
    frame[5:20, 40:60] = render.MOUTH_INTERIOR  # dark pixels outside the mouth region do not count
    assert measure.measure_opening(frame[None], box[None])[0] == pytest.approx(expected)


def test_measure_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        measure.measure_opening(np.zeros((2, 8, 8, 3), np.float32), np.array([0, 0, 8, 8]))
    with pytest.raises(ValueError, match="boxes must be"):
        measure.measure_opening(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="x1 > x0"):
        measure.measure_opening(np.zeros((1, 8, 8, 3), np.uint8), np.array([4, 0, 4, 8]))


# --- on rendered videos -------------------------------------------------------------------------------


def test_measured_opening_tracks_the_truth(videos, tmp_path) -> None:
    for s in videos:
        v = s.video
        assert pearson(measure.measure_opening(v.frames, v.boxes), v.opening) > 0.95
        # Through the codec: H.264 + AAC mp4 as the corpus stores it.
        path = corpus.write_sample(s, tmp_path, seed=11)
        decoded = media.read_frames(path)
        assert pearson(measure.measure_opening(decoded, v.boxes), v.opening) > 0.93
    # On the scale of the truth: mean absolute error small against the [0, 1] range.
    v = videos[0].video
    assert np.abs(measure.measure_opening(v.frames, v.boxes) - v.opening).mean() < 0.1


@pytest.mark.parametrize("size, blur, quality", [(64, 0.0, 80), (64, 1.5, 95), (48, 1.0, 90)])
def test_measured_opening_survives_face_crops_blur_and_jpeg(videos, size, blur, quality) -> None:
    """What a model sees and produces: small face crops, blurry mouths, JPEG (the shards store JPEG)."""
    for s in videos:
        v = s.video
        regions = np.stack([square_around(b, 1.5) for b in v.boxes])
        crops = [crop_square(f, r, size) for f, r in zip(v.frames, regions)]
        crops = [cv2.GaussianBlur(c, (0, 0), blur) if blur else c for c in crops]
        jpeg = np.stack([cv2.imdecode(cv2.imencode(".jpg", c, [cv2.IMWRITE_JPEG_QUALITY, quality])[1],
                                      cv2.IMREAD_UNCHANGED) for c in crops])
        boxes = measure.boxes_in_crop(v.boxes, regions, size)
        assert pearson(measure.measure_opening(jpeg, boxes), v.opening) > 0.9


def test_scores_source_leaks_copy_and_noise_do_not_sync(videos) -> None:
    """Source A scored against its own truth leaks ~1; A against another clip's audio B syncs ~0."""
    for s in videos:
        v = s.video
        assert measure.leak_score(v.frames, v.boxes, v.opening) > 0.95
        assert measure.sync_score(v.frames, v.boxes, s.speech.wave) > 0.95  # its own audio
    # Copy-the-input (A's frames with B's audio) and noise frames, over several pairs and noise seeds.
    # Two independent 4 s openings correlate with std ~0.15 by chance; pooling the pairs shrinks that.
    copy, noise, target = [], [], []
    for i, a in enumerate(videos):
        b = videos[(i + 1) % len(videos)]
        frames, boxes = a.video.frames, a.video.boxes
        noise_frames = np.random.default_rng(i).integers(0, 256, frames.shape, dtype=np.uint8)
        assert abs(measure.sync_score(noise_frames, boxes, b.speech.wave)) < 0.3
        copy.append(measure.measure_opening(frames, boxes))
        noise.append(measure.measure_opening(noise_frames, boxes))
        target.append(speech.mouth_opening_from_audio(b.speech.wave, len(frames)))
    assert abs(pearson(np.concatenate(copy), np.concatenate(target))) < 0.2
    assert abs(pearson(np.concatenate(noise), np.concatenate(target))) < 0.2


def test_plot_openings_writes_a_png(tmp_path) -> None:
    t = np.linspace(0, 1, 50)
    measure.plot_openings(t, t ** 2, 1 - t, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

