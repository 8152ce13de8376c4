"""End to end on real media with a tiny random model (issue 5 "must show").

carphone (a real talking face, 29.97 fps, 176x144, no audio) dubbed with real speech (pyannote's
sample) cut shorter and longer than the clip; a copy with face-less grey frames in the middle. The
model is the full pipeline at CPU size (tiny UNet, space-to-depth codec, 1-layer Whisper), saved with
``save_pretrained`` and loaded back, run with 1 sampling step.
"""

from __future__ import annotations

import contextlib
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

from lipsync.assets import asset_path, ensure_assets
from lipsync.infer.pipeline import InferenceResult, LipSyncPipeline
from lipsync.media import probe, read_audio, read_frames, write_video, write_wav

CLIP_FRAMES = 24  # 0.8 s at 29.97 fps
# crf=0: x264 lossless, so the only loss left is RGB <-> YUV 4:2:0 (about 45 dB on this noisy clip); the
# default crf 18 re-encode of carphone alone gives 35 dB, which would hide what the pipeline itself does.
FAST = dict(num_steps=1, progress=False, detect_generated=False, crf=0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """A 24-frame carphone clip (lossless), a copy with grey frames inside, and two speech cuts."""
    ensure_assets(names=["sample.wav", "carphone_pristine.mp4"])
    d = tmp_path_factory.mktemp("media")
    frames = read_frames(asset_path("carphone_pristine.mp4"), 0, CLIP_FRAMES)
    fps = probe(asset_path("carphone_pristine.mp4")).fps
    grey = frames.copy()
    grey[8:14] = 128  # 6 face-less frames: a cut-away longer than the gap filler's limit (4)
    speech, rate = read_audio(asset_path("sample.wav"), sample_rate=None, mono=False)  # 16 kHz mono
    speech44, _ = read_audio(asset_path("sample.wav"), sample_rate=44_100, mono=False)
    # pyannote's sample is quiet for its first 8 s and speech from there to 30 s
    stereo = np.concatenate([speech44, 0.5 * speech44])[:, int(8.0 * 44_100) : int(9.2 * 44_100)]
    paused = speech[:, 8 * rate : int(8.7 * rate)].copy()
    paused[:, int(0.15 * rate) : int(0.55 * rate)] = 0
    face, grey_path = write_video(d / "face.mp4", frames, fps, crf=0), write_video(
        d / "grey.mp4", grey, fps, crf=0
    )
    return {
        "face": face,
        "grey": grey_path,
        # each source passed through the same writer untouched: what "unchanged" looks like after encoding
        "face_passed": write_video(d / "face_passed.mp4", read_frames(face), fps, crf=0),
        "grey_passed": write_video(d / "grey_passed.mp4", read_frames(grey_path), fps, crf=0),
        "short": write_wav(
            d / "short.wav", speech[:, 8 * rate : int(8.7 * rate)], rate
        ),  # 0.7 s < 0.8 s clip
        "long": write_wav(d / "long.wav", stereo, 44_100),  # 1.2 s stereo 44.1 kHz > clip: ping-pong
        "pause": write_wav(d / "pause.wav", paused, rate),  # 0.7 s with 0.4 s of digital silence inside
    }


@pytest.fixture(scope="module")
def pipe(tmp_path_factory, save_tiny_pipeline) -> LipSyncPipeline:
    folder = save_tiny_pipeline(tmp_path_factory.mktemp("ckpt"))
    return LipSyncPipeline.from_pretrained(folder)


def outside_psnr(result: InferenceResult, source: np.ndarray, out: np.ndarray, margin: int = 0) -> float:
    """PSNR between output and source frames over every pixel outside that frame's paste region (+ margin)."""
    err, count = 0.0, 0
    for t in range(len(out)):
        keep = np.ones(out.shape[1:3], bool)
        x0, y0, x1, y1 = result.paste_region[t]
        if x1 > x0:
            keep[max(0, y0 - margin) : y1 + margin, max(0, x0 - margin) : x1 + margin] = False
        diff = out[t][keep].astype(np.float64) - source[result.source_index[t]][keep]
        err, count = err + float((diff**2).sum()), count + diff.size
    return float("inf") if err == 0 else 10 * np.log10(255.0**2 / (err / count))


def check_outside(result: InferenceResult, media: dict[str, Path], name: str) -> None:
    """Outside the pasted region the output is the source: bit-identical to the source passed through the
    same encoder (2 px margin: 4:2:0 chroma is shared by 2x2 pixels), and well above 40 dB to the source."""
    out = read_frames(result.output)
    assert outside_psnr(result, read_frames(media[f"{name}_passed"]), out, margin=2) == float("inf")
    assert outside_psnr(result, read_frames(media[name]), out) > 44


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
    # CFG 3 (two passes in one batch) and the generated-face detector on (it finds no face in a random
    # model's 32 px crops, so the original box alone is pasted)
    result = pipe(media["face"], media["short"], tmp_path / "short.mp4", **{**FAST, "detect_generated": True})
    check_streams(result.output, media["face"], media["short"])
    assert result.num_frames == 21 and result.fps == Fraction(30000, 1001)  # 2 segments, overlap blended
    np.testing.assert_array_equal(result.source_index, np.arange(21))
    assert result.edit_weight.min() == 1 and (result.paste_region[:, 2] > result.paste_region[:, 0]).all()
    check_outside(result, media, "face")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["short.mp4"]  # no temporary file left behind


def test_a_poisson_paste_keeps_to_the_edit_rectangle_and_skips_the_generated_face_pass(media, pipe,
                                                                                     tmp_path: Path) -> None:
    """paste_blend=poisson through the pipeline: outside its region the output is the source, as with the
    paper's paste; the region is the undilated edit rectangle, inside the feathered paste's dilated one; and
    the detector on the generated crops (which only widens a feathered paste) is not run."""
    feathered = pipe(media["face"], media["short"], tmp_path / "feather.mp4", **FAST)

    class NoDetector:
        def track(self, *args, **kwargs):
            raise AssertionError("a Poisson paste does not use the generated crops' faces")

    kept, pipe.generated_faces = pipe.generated_faces, NoDetector()
    try:
        result = pipe(media["face"], media["short"], tmp_path / "poisson.mp4",
                      **{**FAST, "detect_generated": True, "paste_blend": "poisson"})
    finally:
        pipe.generated_faces = kept
    check_outside(result, media, "face")
    inner, outer = result.paste_region, feathered.paste_region
    assert (inner[:, :2] >= outer[:, :2]).all() and (inner[:, 2:] <= outer[:, 2:]).all()
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    assert (area(inner) > 0).all() and area(inner).sum() < 0.9 * area(outer).sum()
    out, fed = read_frames(result.output), read_frames(feathered.output)
    assert not np.array_equal(out, fed)  # the blend itself differs inside


def test_longer_audio_ping_pongs_and_carries_stereo_44k(media, pipe, tmp_path: Path) -> None:
    result = pipe(media["face"], media["long"], tmp_path / "long.mp4", **FAST, guidance_scale=1.0)
    check_streams(result.output, media["face"], media["long"])
    assert result.num_frames == 36 and result.source_index.max() < CLIP_FRAMES
    assert (np.diff(result.source_index) < 0).any()  # played backwards after the end
    check_outside(result, media, "face")


def test_face_less_frames_pass_through_and_edits_fade_around_them(media, pipe, tmp_path: Path) -> None:
    result = pipe(media["grey"], media["short"], tmp_path / "grey.mp4", **FAST, guidance_scale=1.0, fade=3)
    w = result.edit_weight
    assert (w[8:14] == 0).all() and w[:4].min() == 1 and w[18:].min() == 1
    np.testing.assert_allclose(w[4:8], [1.0, 0.75, 0.5, 0.25])  # fades out before the cut-away ...
    np.testing.assert_allclose(w[14:18], [0.25, 0.5, 0.75, 1.0])  # ... and back in after it
    assert (result.paste_region[8:14] == 0).all()
    out, passed = read_frames(result.output), read_frames(media["grey_passed"])
    np.testing.assert_array_equal(out[8:14], passed[8:14])  # the grey frames come out as they went in
    check_outside(result, media, "grey")


def test_silence_keep_policy_passes_the_original_mouth_through(media, pipe, tmp_path: Path) -> None:
    result = pipe(
        media["face"],
        media["pause"],
        tmp_path / "pause.mp4",
        **FAST,
        guidance_scale=1.0,
        silence="keep",
        fade=2,
    )
    assert result.silent[6:15].all() and not result.silent[:3].any() and not result.silent[-3:].any()
    assert (result.edit_weight[result.silent] == 0).all() and result.edit_weight[0] == 1
    assert (result.paste_region[result.silent] == 0).all()
    out, passed = read_frames(result.output), read_frames(media["face_passed"])
    np.testing.assert_array_equal(out[result.silent], passed[result.source_index[result.silent]])


def test_conditions_are_computed_once_and_cfg_is_one_batch(media, pipe, tmp_path: Path) -> None:
    """ID-Guider once per video, Whisper once per track, masked-video latents once per segment, and each
    Euler step one network call holding the conditional and unconditional passes together."""
    calls: dict[str, list] = {"id_guider": [], "whisper": [], "vae_encode": [], "net_batch": []}
    hooks = [
        pipe.net.id_guider.register_forward_hook(lambda *_: calls["id_guider"].append(1)),
        pipe.audio_encoder.register_forward_hook(lambda *_: calls["whisper"].append(1)),
        pipe.net.register_forward_pre_hook(lambda _, args: calls["net_batch"].append(args[0].shape[0])),
    ]
    encode = pipe.vae.encode
    pipe.vae.encode = lambda video: calls["vae_encode"].append(1) or encode(video)
    try:
        pipe(media["face"], media["short"], tmp_path / "counted.mp4", **{**FAST, "num_steps": 3})
    finally:
        del pipe.vae.encode
        for h in hooks:
            h.remove()
    assert len(calls["id_guider"]) == 1 and len(calls["whisper"]) == 1
    assert len(calls["vae_encode"]) == 2  # 21 frames = 2 segments
    assert calls["net_batch"] == [2] * (2 * 3)  # 2 segments x 3 steps, batch = (uncond, cond)


@contextlib.contextmanager
def net_calls(pipe: LipSyncPipeline, sampling: dict) -> Iterator[list[tuple[int, float]]]:
    """(batch, c_noise) of every network call while ``pipe`` records ``sampling`` as its model's defaults;
    the hook and the pipeline's own sampling record are restored afterwards."""
    seen: list[tuple[int, float]] = []
    hook = pipe.net.register_forward_pre_hook(
        lambda _, args: seen.append((args[0].shape[0], float(args[1].flatten()[0]))))
    before = pipe.config.get("sampling")
    pipe.config["sampling"] = sampling
    try:
        yield seen
    finally:
        hook.remove()
        pipe.config.pop("sampling")
        if before is not None:
            pipe.config["sampling"] = before


def test_the_models_recorded_noise_range_and_guidance_drive_the_sampling_call(media, pipe, tmp_path: Path) -> None:
    """What the network sees: a model recorded with sigma_max 20 and CFG 1 (experiment=demo) is sampled from
    sigma 20 in single (unguided) passes; a call's own sigma_max / guidance_scale override both."""
    with net_calls(pipe, {"cfg_scale": 1.0, "sigma_min": 0.002, "sigma_max": 20.0}) as seen:
        pipe(media["face"], media["short"], tmp_path / "model.mp4", **{**FAST, "num_steps": 2})
        recorded, seen[:] = list(seen), []
        pipe(media["face"], media["short"], tmp_path / "call.mp4", **{**FAST, "num_steps": 2},
             sigma_max=80.0, guidance_scale=2.0)
    c_noise = lambda sigma: pytest.approx(0.25 * np.log(sigma), rel=1e-5)  # noqa: E731  (EDM's ln(sigma)/4)
    # 2 segments x 2 Karras steps (sigma_max, then sigma_min); batch 1 = no guidance pass, 2 = (uncond, cond)
    assert recorded == [(1, c_noise(20.0)), (1, c_noise(0.002))] * 2
    assert seen == [(2, c_noise(80.0)), (2, c_noise(0.002))] * 2


def test_the_fast_preset_reaches_the_network_as_its_solver_steps_and_guidance_interval(media, pipe,
                                                                                     tmp_path: Path) -> None:
    """``preset="fast"``: the preset's solver (Euler) at its steps, the unconditional pass batched in only for
    sigma inside the preset's interval; an explicit option (num_steps) still wins over the preset."""
    from lipsync.sampling import evaluation_sigmas, karras_sigmas
    from lipsync.sampling.presets import PRESETS

    fast = PRESETS["fast"]
    with net_calls(pipe, {"cfg_scale": 2.0, "sigma_min": 0.002, "sigma_max": 20.0}) as seen:
        pipe(media["face"], media["short"], tmp_path / "fast.mp4", **{**FAST, "num_steps": None}, preset="fast")
        preset_calls, seen[:] = list(seen), []
        pipe(media["face"], media["short"], tmp_path / "fast4.mp4", **{**FAST, "num_steps": 4}, preset="fast")
    lo, hi = fast["guidance_interval"]

    def expected(steps: int) -> list:
        sigmas = evaluation_sigmas(fast["sampler"], karras_sigmas(steps, 0.002, 20.0))
        return [(2 if lo < s <= hi else 1, pytest.approx(0.25 * np.log(s), rel=1e-4)) for s in sigmas]

    assert {b for b, _ in preset_calls} == {1, 2}  # guided inside the interval only
    assert preset_calls == expected(fast["num_steps"]) * 2  # 21 frames: still 2 segments at the fast overlap
    assert seen == expected(4) * 2


def test_the_student_preset_runs_its_recorded_passes_without_a_cfg_batch(media, pipe, tmp_path: Path) -> None:
    """``preset="student"`` on a model recording ``student_sigmas`` (a converted experiment=distill run): per
    segment one network pass at each recorded level, batch 1 (guidance 1: no unconditional pass); one
    pass with ``num_steps=1``; a model that is not a student refuses it in one line before any work."""
    student = {"cfg_scale": 1.0, "sigma_min": 0.002, "sigma_max": 20.0, "student_sigmas": [20.0, 0.82]}
    c_noise = lambda sigma: pytest.approx(0.25 * np.log(sigma), rel=1e-5)  # noqa: E731
    with net_calls(pipe, student) as seen:
        pipe(media["face"], media["short"], tmp_path / "two.mp4", **{**FAST, "num_steps": None},
             preset="student")
        two, seen[:] = list(seen), []
        pipe(media["face"], media["short"], tmp_path / "one.mp4", **FAST, preset="student")
    assert two == [(1, c_noise(20.0)), (1, c_noise(0.82))] * 2  # 21 frames: 2 segments
    assert seen == [(1, c_noise(20.0))] * 2
    with net_calls(pipe, {"cfg_scale": 2.0, "sigma_min": 0.002, "sigma_max": 20.0}) as seen:
        with pytest.raises(ValueError, match="needs a distilled student .* no sampling.student_sigmas"):
            pipe(media["face"], media["short"], tmp_path / "refused.mp4", **FAST, preset="student")
    assert seen == [] and not (tmp_path / "refused.mp4").exists()


@pytest.fixture(scope="module")
def odd_clip(media, tmp_path_factory) -> Path:
    """The face clip on a 257x191 canvas (edge-padded): both sides odd, as a dubbed 257x191 video once was
    written 258x192."""
    frames = np.pad(read_frames(media["face"]), ((0, 0), (20, 27), (40, 41), (0, 0)), mode="edge")
    return write_video(tmp_path_factory.mktemp("odd") / "odd.mp4", frames, probe(media["face"]).fps, crf=0)


def test_an_odd_sized_video_is_dubbed_at_its_own_size(odd_clip, media, pipe, tmp_path: Path) -> None:
    result = pipe(odd_clip, media["short"], tmp_path / "odd.mp4", **{**FAST, "crf": 18})  # the default crf
    check_streams(result.output, odd_clip, media["short"])
    assert (probe(result.output).width, probe(result.output).height) == (257, 191)
    assert (result.paste_region[:, 2] > result.paste_region[:, 0]).all()
    assert outside_psnr(result, read_frames(odd_clip), read_frames(result.output)) > 35


def test_lossless_keeps_every_pixel_outside_the_paste_region_bit_for_bit(odd_clip, media, pipe,
                                                                         tmp_path: Path) -> None:
    """options.lossless: outside the paste region the output is the source's decoded pixels, exactly. The
    default crf 18, and even crf 0 (lossless in YUV 4:2:0, not in RGB), only come close."""
    for clip in (odd_clip, media["face"]):
        source = read_frames(clip)
        result = pipe(clip, media["short"], tmp_path / f"lossless_{clip.name}", **FAST, lossless=True)
        out = read_frames(result.output)
        assert outside_psnr(result, source, out) == float("inf"), clip.name
        inside = [out[t, y0:y1, x0:x1] != source[t, y0:y1, x0:x1]
                  for t, (x0, y0, x1, y1) in enumerate(result.paste_region)]
        assert np.mean([d.mean() for d in inside]) > 0.5  # the face itself was edited
    crf0 = pipe(media["face"], media["short"], tmp_path / "crf0.mp4", **FAST)
    assert 44 < outside_psnr(crf0, source, read_frames(crf0.output)) < float("inf")
