"""Condition dropout: exact at 0 and 1, nested, at the paper's rates within tolerance, never mutating."""

import pytest
import torch

from lipsync.models.conditions import (ConditionDropout, cat_conditions, drop_conditions, null_conditions)


def make_cond(b=6):
    return {"concat": torch.randn(b, 2, 4, 3, 3), "audio": torch.randn(b, 2, 10, 5) + 3,
            "id": [torch.randn(b, 8, 4, 4) + 3, torch.randn(b, 16, 2, 2) + 3]}


def test_rates_exact_at_zero_and_one():
    cond = make_cond()
    kept = ConditionDropout(0.0, 0.0)(cond)
    assert torch.equal(kept["audio"], cond["audio"]) and all(torch.equal(a, b) for a, b in zip(kept["id"], cond["id"]))
    gone = ConditionDropout(1.0, 1.0)(cond)
    assert gone["audio"].abs().sum() == 0 and all(f.abs().sum() == 0 for f in gone["id"])
    audio_only = ConditionDropout(0.0, 1.0)(cond)
    assert audio_only["audio"].abs().sum() == 0 and all(torch.equal(a, b) for a, b in zip(audio_only["id"], cond["id"]))
    for out in (kept, gone, audio_only):
        assert torch.equal(out["concat"], cond["concat"])  # masked video is never dropped


def test_paper_rates_nested_and_within_tolerance():
    drop = ConditionDropout(0.05, 0.15)
    n = 200_000
    drop_ref, drop_audio = drop.sample(n, generator=torch.Generator().manual_seed(0))
    assert bool((drop_audio | ~drop_ref).all())  # reference drop implies audio drop
    tol = 4 * (0.15 * 0.85 / n) ** 0.5
    assert drop_ref.float().mean().item() == pytest.approx(0.05, abs=tol)
    assert drop_audio.float().mean().item() == pytest.approx(0.15, abs=tol)
    assert (drop_audio & ~drop_ref).float().mean().item() == pytest.approx(0.10, abs=tol)


def test_drop_is_per_sample_and_does_not_mutate():
    cond = make_cond(4)
    before = {k: (v.clone() if torch.is_tensor(v) else [f.clone() for f in v]) for k, v in cond.items()}
    out = drop_conditions(cond, torch.tensor([True, False, False, False]), torch.tensor([False, True, False, False]))
    assert out["audio"][:2].abs().sum() == 0 and torch.equal(out["audio"][2:], cond["audio"][2:])
    assert out["id"][0][0].abs().sum() == 0 and torch.equal(out["id"][0][1:], cond["id"][0][1:])
    assert torch.equal(cond["audio"], before["audio"]) and torch.equal(cond["id"][1], before["id"][1])


def test_null_and_cat():
    cond = make_cond(3)
    null = null_conditions(cond)
    both = cat_conditions([null, cond])
    assert both["audio"].shape[0] == 6 and both["id"][1].shape[0] == 6
    assert both["audio"][:3].abs().sum() == 0 and torch.equal(both["audio"][3:], cond["audio"])
    assert torch.equal(both["concat"][:3], cond["concat"])


def test_invalid_rates_rejected():
    with pytest.raises(ValueError, match="p_audio"):
        ConditionDropout(0.2, 0.1)
    with pytest.raises(ValueError, match="p_ref"):
        ConditionDropout(-0.1, 0.1)
