"""Self-reconstruction quality in the mask (lipsync.evaluate.reconstruction): closed-form values on known
image pairs, the resolution ceiling on images whose round trip is known, and the edit region of a real
synthetic clip matching what the pipeline masks."""

from __future__ import annotations

import numpy as np
import pytest

from lipsync.data.masks import render_masks
from lipsync.evaluate.reconstruction import (EditRegion, ReconstructionScorer, masked_psnr, masked_ssim,
                                             resolution_ceiling, summarize)

H = W = 128
SQUARE = np.array([32.0, 32.0, 96.0, 96.0])  # a 64 px crop square: 16 px is a 4x round trip, 32 px 2x
MASK = np.array([40.0, 60.0, 88.0, 92.0])  # 48 x 32 px inside it


def _region(n: int = 1) -> EditRegion:
    return EditRegion(np.tile(SQUARE, (n, 1)), np.tile(MASK, (n, 1)))


def _mask(n: int = 1) -> np.ndarray:
    return render_masks(np.tile(MASK, (n, 1)), H, W)[:, 0]


def test_masked_psnr_is_the_psnr_of_the_mask_pixels_only() -> None:
    reference = np.zeros((1, H, W, 3), np.uint8)
    generated = np.full((1, H, W, 3), 200, np.uint8)  # far off outside the mask: must not count
    generated[0, 60:92, 40:88] = 26  # inside: off by 26/255 everywhere
    assert _mask()[0].sum() == 48 * 32
    expected = 10 * np.log10(1 / (26 / 255) ** 2)  # 19.83 dB
    assert masked_psnr(generated, reference, _mask())[0] == pytest.approx(expected, abs=1e-4)
    assert masked_psnr(reference, reference, _mask())[0] == 100.0  # identical: the 100 dB cap


def test_masked_ssim_is_one_for_identical_and_ignores_what_lies_far_outside() -> None:
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    generated = reference.copy()
    generated[:, :20] = 0  # 40 px above the mask: beyond the 11 px window
    np.testing.assert_allclose(masked_ssim(generated, reference, _mask(2)), 1.0, atol=1e-5)
    generated[:, 60:92, 40:88] = 255 - generated[:, 60:92, 40:88]  # inverted texture inside
    assert masked_ssim(generated, reference, _mask(2)).max() < 0.0


def test_the_ceiling_keeps_what_a_low_resolution_crop_can_hold_and_loses_the_rest() -> None:
    """A linear ramp survives the 16 px round trip (bilinear both ways, crop and paste on one grid: no
    shift); stripes 2 px wide average to grey at 16 px (4x), PSNR 10 log10(1 / 0.25) = 6.02 dB, with the
    paper's feathered paste (a Poisson paste keeps the source's gradients in a ~2 px band at the border)."""
    from lipsync.infer.options import InferenceOptions

    feather, poisson = InferenceOptions(), InferenceOptions(paste_blend="poisson")
    x = np.arange(W, dtype=np.float64)
    ramp = np.broadcast_to((60 + x)[None, :, None], (H, W, 3)).astype(np.uint8)[None]
    back = resolution_ceiling(ramp, _region(), 16, feather)
    assert masked_psnr(resolution_ceiling(ramp, _region(), 16, poisson), ramp, _mask())[0] > 45  # the same
    assert masked_psnr(back, ramp, _mask())[0] > 45  # exact but for uint8 rounding
    np.testing.assert_array_equal(back[0, :50], ramp[0, :50])  # above the (dilated) mask: the source

    stripes = np.zeros((1, H, W, 3), np.uint8)
    stripes[0, :, (np.arange(W) // 2) % 2 == 1] = 255
    low = masked_psnr(resolution_ceiling(stripes, _region(), 16, feather), stripes, _mask())[0]
    assert low == pytest.approx(6.02, abs=0.3)
    blended = masked_psnr(resolution_ceiling(stripes, _region(), 16, poisson), stripes, _mask())[0]
    assert low < blended < low + 2  # Poisson: the border band keeps some of the source's stripes
    mid = resolution_ceiling(stripes, _region(), 64, feather)  # 1:1: nothing lost
    assert masked_psnr(mid, stripes, _mask())[0] > 40


def test_a_ceiling_is_written_to_h264_as_a_dub_is_before_it_is_scored() -> None:
    """A dub is scored on the frames read back from its mp4 (4:2:0 chroma, crf 18); so is a ceiling, or the
    model alone would pay the codec's loss (0.1-0.3 dB in the mask on the showcase's held-out clips)."""
    from pathlib import Path

    from lipsync import media
    from lipsync.evaluate.quality import Quality

    rng = np.random.default_rng(0)
    grey = np.full((4, H, W, 3), 128, np.uint8)
    np.testing.assert_array_equal(media.as_written(grey, 25), grey)  # a flat grey survives exactly
    # A textured face-like frame comes back close but not equal (x264 at crf 18 plus 4:2:0 chroma).
    base = np.clip(rng.normal(150, 40, (1, H // 8, W // 8, 3)), 0, 255).repeat(8, 1).repeat(8, 2)
    texture = np.clip(base + rng.normal(0, 4, (4, H, W, 3)), 0, 255).astype(np.uint8)
    written = media.as_written(texture, 25)
    assert written.shape == texture.shape and written.dtype == np.uint8
    psnr = masked_psnr(written, texture, _mask(4)).mean()
    assert 28 < psnr < 45
    assert masked_psnr(media.as_written(texture, 25, crf=40), texture, _mask(4)).mean() < psnr - 2  # crf is used

    # Quality.ceiling pastes with the dubs' options and writes with their crf (a Poisson paste and crf 30
    # here: neither is the default, so a ceiling that ignored the options would come out otherwise).
    from lipsync.infer.options import InferenceOptions
    from lipsync.prepare.crop import CropSpec

    options = InferenceOptions(paste_blend="poisson", crf=30)
    quality = Quality([], faces=None, options=options)
    video = Path("synth_00000.mp4")
    quality.videos, quality.sources = [video], {video: texture}
    quality.region = lambda v, crop, mask: _region(4)
    quality.score = lambda outputs, crop, mask: {"frames": outputs[video]}
    scored = quality.ceiling(16, CropSpec(resolution=32, scale=0.8, shift_y=0.15, alpha=0.2), None)["frames"]
    raw = resolution_ceiling(texture, _region(4), 16, options)
    np.testing.assert_array_equal(scored, media.as_written(raw, 25, crf=30))
    assert not np.array_equal(scored, raw)
    assert not np.array_equal(scored, media.as_written(resolution_ceiling(texture, _region(4), 16), 25, crf=30))
    assert not np.array_equal(scored, media.as_written(raw, 25))


def test_the_scorer_averages_frames_then_videos_and_fid_counts_every_frame() -> None:
    reference = np.zeros((4, H, W, 3), np.uint8)
    generated = reference.copy()
    generated[:2, 60:92, 40:88] = 26  # two frames off by 26/255, two exact (capped at 100 dB)
    scorer = ReconstructionScorer(fid=None)
    row = scorer("v", generated, reference, _region(4))
    assert row.frames == 4
    assert row.psnr == pytest.approx((2 * 10 * np.log10(1 / (26 / 255) ** 2) + 2 * 100) / 4, abs=1e-3)
    other = scorer("w", reference[:2], reference[:2], _region(2))
    s = summarize([row, other], *scorer.fid())
    assert s["psnr"] == pytest.approx((row.psnr + 100) / 2) and s["frames"] == 6 and s["fid"] is None
