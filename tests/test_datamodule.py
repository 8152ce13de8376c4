"""LipSyncDataModule on prepared real media: the batch contract, masks, audio windows, cached encodings
equal to on-the-fly ones, and mid-epoch resume with several workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from litdata import StreamingDataLoader, StreamingDataset

from _data_corpus import prepared_corpus
from lipsync.data import batch as B
from lipsync.data import shards
from lipsync.data.datamodule import LipSyncClips, LipSyncDataModule
from lipsync.data.masks import AdaptiveMask, FixedMask
from lipsync.models.audio import WhisperAudioEncoder, frame_windows
from lipsync.models.vae import SpaceToDepthVAE
from lipsync.prepare.curate import Encoders, encode_latents

TINY_WHISPER = dict(n_mels=80, n_audio_ctx=1500, n_audio_state=16, n_audio_head=2, n_audio_layer=1, n_vocab=8,
                    n_text_ctx=4, n_text_state=16, n_text_head=2, n_text_layer=1)


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory) -> str:
    return str(prepared_corpus(tmp_path_factory.getbasetemp() / "data_corpus")["output"] / "shards")


@pytest.fixture(scope="module")
def encoder() -> WhisperAudioEncoder:
    torch.manual_seed(0)
    return WhisperAudioEncoder.from_dims(TINY_WHISPER)


def test_batches_follow_the_contract(shard_dir: str, encoder) -> None:
    dm = LipSyncDataModule(shard_dir, num_frames=8, batch_size=2, num_workers=0, audio_encoder=encoder)
    batch = next(iter(dm.train_dataloader()))
    B.validate_batch(batch)
    assert batch[B.VIDEO].shape == (2, 8, 3, 64, 64) and batch[B.AUDIO_FEATS].shape == (2, 8, 10, 16)
    assert batch[B.VIDEO].min() >= -1 and batch[B.VIDEO].max() <= 1
    torch.testing.assert_close(batch[B.MASKED_VIDEO], batch[B.VIDEO] * (1 - batch[B.MASK]))
    assert set(batch[B.MASK].unique().tolist()) == {0.0, 1.0} and (batch[B.REF_MASK].sum((1, 2, 3)) > 0).all()
    assert len(batch[B.KEY]) == 2 and all(k.count("/") == 2 for k in batch[B.KEY])


def test_sample_window_mask_and_audio_match_the_stored_segment(shard_dir: str, encoder) -> None:
    mask = AdaptiveMask()
    data = LipSyncClips(shard_dir, num_frames=8, mask=mask, audio_encoder=encoder)
    item = StreamingDataset(shard_dir)[0]
    sample = data.sample(item, np.random.default_rng(3))
    start = int(sample[B.KEY].split("/")[2]) - item["start_frame"]
    frames = shards.decode_jpegs(item["frames"], item["frame_offsets"], range(start, start + 8))
    torch.testing.assert_close(sample[B.VIDEO], torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1)
    # the mask is the whole-segment smoothed rectangle, windowed; it covers the window's lips
    full = mask(np.asarray(item["landmarks"]), shards.layout_of(item), 64, 64)
    np.testing.assert_array_equal(sample[B.MASK].numpy(), full[start:start + 8])
    lips = np.asarray(item["landmarks"])[start:start + 8, shards.layout_of(item).mouth_idx].astype(int)
    for t in range(8):
        assert sample[B.MASK][t, 0, lips[t, :, 1], lips[t, :, 0]].all()
    # audio: frame t gets encoder steps 2(t-2) .. 2(t+2)+1 of the segment's own audio
    feats = encoder(item["audio"])[0]
    torch.testing.assert_close(sample[B.AUDIO_FEATS], frame_windows(feats, 8, 2, start_frame=start))


def test_reference_comes_from_the_same_source_video(shard_dir: str, encoder) -> None:
    data = LipSyncClips(shard_dir, num_frames=8)
    item = dict(StreamingDataset(shard_dir)[0])
    item["audio_feats"] = np.zeros((200, 4), np.float32)  # cached features: no encoder run per draw
    refs = shards.decode_jpegs(item["ref_frames"], item["ref_offsets"], range(8))
    refs = torch.from_numpy(refs).permute(0, 3, 1, 2).float() / 127.5 - 1
    seen = set()
    for seed in range(12):
        ref = data.sample(item, np.random.default_rng(seed))[B.REF]
        seen.add(int(torch.stack([(ref - r).abs().max() for r in refs]).argmin()))
    assert len(seen) > 2  # drawn among the pool, not always the same frame
    others = [StreamingDataset(shard_dir)[i] for i in range(len(StreamingDataset(shard_dir)))]
    assert all(o["ref_frames"] == item["ref_frames"] for o in others if o["video_id"] == item["video_id"])


def test_a_steady_masks_reference_has_the_segments_box_size(shard_dir: str) -> None:
    # At inference the reference frame is masked with its video's steady box; training does the same.
    mask = AdaptiveMask(size="steady")
    data = LipSyncClips(shard_dir, num_frames=8, mask=mask)
    item = dict(StreamingDataset(shard_dir)[0])
    item["audio_feats"] = np.zeros((200, 4), np.float32)
    layout, lm, refs = shards.layout_of(item), np.asarray(item["landmarks"]), np.asarray(item["ref_landmarks"])
    differs = 0
    for seed in range(6):
        sample = data.sample(item, np.random.default_rng(seed))
        rng = np.random.default_rng(seed)  # the draws sample() makes: window start, then reference index
        rng.integers(0, shards.num_frames(item) - 8 + 1)
        j = int(rng.integers(0, len(item["ref_offsets"]) - 1))
        expected = mask(refs[j:j + 1], layout, 64, 64, size_from=lm)[0]
        np.testing.assert_array_equal(sample[B.REF_MASK].numpy(), expected)
        differs += not np.array_equal(expected, mask(refs[j:j + 1], layout, 64, 64)[0])
    assert differs > 0  # sized by its own frame alone, some reference masks would be smaller


def test_missing_encoder_and_mask_mismatch_are_clear_errors(shard_dir: str) -> None:
    item = StreamingDataset(shard_dir)[0]
    with pytest.raises(ValueError, match="data.audio_encoder"):
        LipSyncClips(shard_dir, num_frames=8).sample(item, np.random.default_rng(0))
    with pytest.raises(ValueError, match="num_frames=999"):
        LipSyncClips(shard_dir, num_frames=999).sample(item, np.random.default_rng(0))
    with pytest.raises(ValueError, match="no complete shards"):
        LipSyncDataModule(shard_dir + "-missing").setup("fit")
    with pytest.raises(ValueError, match="fewer than data.batch_size=10000"):
        LipSyncDataModule(shard_dir, batch_size=10_000, num_workers=0).train_dataloader()


def test_cached_encodings_equal_on_the_fly_ones(tmp_path, encoder) -> None:
    """Issue 7: audio features and VAE latents cached by prepare give the same sample as computing them
    at load time (the same frozen encoders, the same stored frames and mask)."""
    from functools import partial

    from _data_corpus import make_carphone
    from lipsync.data.faces import MediaPipeFaces
    from lipsync.prepare.curate import Curator
    from lipsync.prepare.filters import MinFaceSize
    from lipsync.prepare.crop import CropSpec
    from lipsync.prepare.run import prepare

    vae, mask = SpaceToDepthVAE(factor=4), AdaptiveMask()
    video = make_carphone(tmp_path / "videos" / "talk.mp4", frames=75)
    curator = Curator(staging=tmp_path / "out" / "staging", faces=MediaPipeFaces, min_face=MinFaceSize(32),
                      crop=CropSpec(resolution=64), segment_frames=50,
                      encoders=partial(Encoders, audio=encoder, vae=vae, mask=mask))
    prepare(curator, [video], tmp_path / "out", progress=False)
    shard_dir = str(tmp_path / "out" / "shards")
    item = StreamingDataset(shard_dir)[0]
    assert {"audio_feats", "latents", "masked_latents", "mask_spec"} <= set(item)
    plain = {k: v for k, v in item.items() if k not in ("audio_feats", "latents", "masked_latents", "mask_spec")}
    data = LipSyncClips(shard_dir, num_frames=8, mask=mask, audio_encoder=encoder)
    a = data.sample(item, np.random.default_rng(7))
    b = data.sample(plain, np.random.default_rng(7))
    for key in (B.VIDEO, B.MASK, B.REF, B.AUDIO_FEATS):
        torch.testing.assert_close(a[key], b[key])
    torch.testing.assert_close(a[B.LATENTS], vae.encode(b[B.VIDEO][None])[0])
    torch.testing.assert_close(a[B.MASKED_LATENTS], vae.encode(b[B.MASKED_VIDEO][None])[0])
    with pytest.raises(ValueError, match="masked latents made with AdaptiveMask"):
        LipSyncClips(shard_dir, num_frames=8, mask=FixedMask(), audio_encoder=encoder).sample(
            item, np.random.default_rng(7))
    assert encode_latents(plain, vae, None).keys() == {"latents"}


def _keys(loader) -> list[str]:
    return [k for batch in loader for k in batch[B.KEY]]


def test_resume_mid_epoch_without_repeats_or_skips(shard_dir: str, encoder) -> None:
    def loader() -> StreamingDataLoader:
        data = LipSyncClips(shard_dir, num_frames=4, audio_encoder=encoder, shuffle=True, seed=5)
        return StreamingDataLoader(data, batch_size=1, num_workers=2)

    full = _keys(loader())
    first = loader()
    seen, state = [], None
    for i, batch in enumerate(first):
        seen.extend(batch[B.KEY])
        if i + 1 == 2:
            state = first.state_dict()
            break
    resumed = loader()
    resumed.load_state_dict(state)
    rest = _keys(resumed)
    assert seen + rest == full and len(set(full)) == len(full)
