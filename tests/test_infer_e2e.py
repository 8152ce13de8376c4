"""End to end on real media with a tiny random model (issue 5 "must show").

carphone (a real talking face, 29.97 fps, 176x144, no audio) dubbed with real speech (pyannote's
sample) cut shorter and longer than the clip; a copy with face-less grey frames in the middle. The
model is the full pipeline at CPU size (tiny UNet, space-to-depth codec, 1-layer Whisper), saved with
``save_pretrained`` and loaded back, run with 1 sampling step.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from lipsync.assets import asset_path, ensure_assets
from lipsync.infer.pipeline import InferenceResult, LipSyncPipeline
from lipsync.infer.presets import tiny_config
from lipsync.media import probe, read_audio, read_frames, write_video, write_wav

CLIP_FRAMES = 40
FAST = dict(num_steps=1, progress=False, detect_generated=False)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """A 40-frame carphone clip (near-lossless), one with grey frames inside, and three speech cuts."""
    ensure_assets(names=["sample.wav", "carphone_pristine.mp4"])
    d = tmp_path_factory.mktemp("media")
    frames = read_frames(asset_path("carphone_pristine.mp4"), 0, CLIP_FRAMES)
    fps = probe(asset_path("carphone_pristine.mp4")).fps
    grey = frames.copy()
    grey[14:26] = 128  # 12 face-less frames: a cut-away longer than the gap filler's limit
    speech, rate = read_audio(asset_path("sample.wav"), sample_rate=None, mono=False)  # 16 kHz mono
    speech44, _ = read_audio(asset_path("sample.wav"), sample_rate=44_100, mono=False)
    stereo = np.concatenate([speech44, 0.5 * speech44])[:, int(1.0 * 44_100):int(3.0 * 44_100)]
    return {
        "face": write_video(d / "face.mp4", frames, fps, crf=0),
        "grey": write_video(d / "grey.mp4", grey, fps, crf=0),
        "short": write_wav(d / "short.wav", speech[:, rate:int(2.0 * rate)], rate),  # 1 s < 1.33 s clip
        "long": write_wav(d / "long.wav", stereo, 44_100),  # 2 s stereo 44.1 kHz > clip: ping-pong
    }


@pytest.fixture(scope="module")
def pipe(tmp_path_factory) -> LipSyncPipeline:
    torch.manual_seed(0)
    folder = LipSyncPipeline.from_config(tiny_config(resolution=32)).save_pretrained(tmp_path_factory.mktemp("ckpt"))
    return LipSyncPipeline.from_pretrained(folder, generated_faces=None)


def outside_psnr(result: InferenceResult, source: np.ndarray, out: np.ndarray) -> float:
    """PSNR between output and source frames over every pixel outside that frame's paste region."""
    err, count = 0.0, 0
    for t in range(len(out)):
        keep = np.ones(out.shape[1:3], bool)
        x0, y0, x1, y1 = result.paste_region[t]
        keep[y0:y1, x0:x1] = False
        diff = out[t][keep].astype(np.float64) - source[result.source_index[t]][keep]
        err, count = err + float((diff ** 2).sum()), count + diff.size
    return 10 * np.log10(255.0 ** 2 / max(err / count, 1e-12))


def check_streams(output: Path, video: Path, audio: Path) -> None:
    """Source fps and resolution kept; driving audio's rate and channels kept; length = audio length."""
    src, out = probe(video), probe(output)
    wave, rate = read_audio(audio, sample_rate=None, mono=False)
    assert (out.width, out.height, out.fps) == (src.width, src.height, src.fps)
    assert out.num_frames == round(wave.shape[1] / rate * float(src.fps))
    assert (out.audio_rate, out.audio_channels) == (rate, wave.shape[0])
    carried, carried_rate = read_audio(output, sample_rate=None, mono=False)
    assert carried_rate == rate and carried.shape[0] == wave.shape[0]
    assert abs(carried.shape[1] / rate - wave.shape[1] / rate) < 0.05  # within one AAC frame or so


def test_shorter_audio_truncates_and_keeps_everything_outside_the_face(media, pipe, tmp_path: Path) -> None:
    result = pipe(media["face"], media["short"], tmp_path / "short.mp4", **FAST)
    check_streams(result.output, media["face"], media["short"])
    assert result.num_frames == 30 and result.fps == Fraction(30000, 1001)
    np.testing.assert_array_equal(result.source_index, np.arange(30))
    assert result.edit_weight.min() == 1 and (result.paste_region[:, 2] > result.paste_region[:, 0]).all()
    source, out = read_frames(media["face"]), read_frames(result.output)
    assert outside_psnr(result, source, out) > 45
    assert not list(tmp_path.glob("*partial*"))


def test_longer_audio_ping_pongs_and_carries_stereo_44k(media, pipe, tmp_path: Path) -> None:
    result = pipe(media["face"], media["long"], tmp_path / "long.mp4", **FAST)
    check_streams(result.output, media["face"], media["long"])
    assert result.num_frames == 60 and result.source_index.max() < CLIP_FRAMES
    assert (np.diff(result.source_index) < 0).any()  # played backwards after the end
    source, out = read_frames(media["face"]), read_frames(result.output)
    assert outside_psnr(result, source, out) > 45


def test_face_less_frames_pass_through_and_edits_fade_around_them(media, pipe, tmp_path: Path) -> None:
    result = pipe(media["grey"], media["short"], tmp_path / "grey.mp4", **FAST, fade=3)
    w = result.edit_weight
    assert (w[14:26] == 0).all() and w[:10].min() == 1 and w[30 - 1] == 1
    np.testing.assert_allclose(w[10:14], [1.0, 0.75, 0.5, 0.25])  # fades out before the cut-away
    assert (result.paste_region[14:26] == 0).all()
    source, out = read_frames(media["grey"]), read_frames(result.output)
    assert np.abs(out[14:26].astype(int) - 128).max() <= 2  # the grey frames come out grey
    assert outside_psnr(result, source, out) > 45
