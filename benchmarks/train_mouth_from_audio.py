"""Fit the mouth-from-audio predictor of ``options.face=speaker`` on the realfaces corpus's tuning people.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_mouth_from_audio.py [--corpus ../shared/realfaces]

For every clip but the held-out people's (:data:`lipsync.evaluate.real_scenes.HELD_OUT`): the clip cut
to its face square at 25 fps (:func:`~lipsync.evaluate.real_scenes.load_clip`), MediaPipe's face mesh
in tracking mode, the mouth opening per frame; its own sound through
:func:`lipsync.infer.mouth_from_audio.frame_features`. Writes the weights
(``src/lipsync/infer/mouth_from_audio.npz``) and ``bench_results/mouth_from_audio.json``: per clip, how
well a fit that never saw that clip predicts its opening, against the loudness (Pearson r of the two
curves detrended by a 12-frame Gaussian, as ``speaker`` compares them). The openings are cached under
``--cache`` (numbers only; git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logging: warnings and up only

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from lipsync.benchresults import RESULTS, ROOT, Results, skip  # noqa: E402
from lipsync.data.face_tracks import mouth_opening  # noqa: E402
from lipsync.data.faces import MediaPipeFaces  # noqa: E402
from lipsync.evaluate.real_scenes import HELD_OUT, load_clip  # noqa: E402
from lipsync.infer.face_choice import SpeakerRule, detrended, filled, frame_loudness, pearson  # noqa: E402
from lipsync.infer.mouth_from_audio import WEIGHTS, MouthFromAudio, frame_features  # noqa: E402
from lipsync.media import MODEL_FPS, MODEL_SAMPLE_RATE, atomic_path  # noqa: E402


def clip_opening(path: Path, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """The clip's mouth opening per 25 fps frame ``(N,)`` (NaN: no face) and its sound ``(N * 640,)``."""
    stored = cache / f"{path.name}.npz"
    if not stored.exists():
        clip = load_clip(path)
        track = MediaPipeFaces().track(path, list(enumerate(clip.frames)))
        with atomic_path(stored) as tmp, open(tmp, "wb") as f:
            np.savez(f, opening=mouth_opening(track.landmarks, track.layout), wave=clip.wave)
    with np.load(stored) as z:
        return z["opening"], z["wave"]


def held_out_r(features: list[np.ndarray], openings: list[np.ndarray], alpha: float) -> list[float]:
    """Per clip: r of the opening a fit without that clip predicts, against the measured one."""
    rule, out = SpeakerRule(), []
    for k in range(len(features)):
        rest = [i for i in range(len(features)) if i != k]
        model = MouthFromAudio.fit([features[i] for i in rest], [openings[i] for i in rest], alpha)
        out.append(pearson(detrended(model(features[k]), rule), detrended(filled(openings[k]), rule)))
    return out


def loudness_r(wave: np.ndarray, opening: np.ndarray) -> float:
    """r of the loudness (silences floored 30 dB under the loud level) against the opening, both detrended."""
    rule = SpeakerRule()
    level = frame_loudness(wave, MODEL_SAMPLE_RATE, MODEL_FPS, len(opening))
    level = np.clip(level, np.percentile(level, 95) - 30.0, None)
    return pearson(detrended(level, rule), detrended(filled(opening), rule))


def main(argv: list[str] | None = None) -> None:
    results = Results([__file__, *(sys.argv[1:] if argv is None else argv)])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "realfaces")
    parser.add_argument("--cache", type=Path, default=ROOT / "outputs" / "mouth_from_audio")
    parser.add_argument("--alpha", type=float, default=10.0)
    parser.add_argument("--report", type=Path, default=RESULTS / "mouth_from_audio.json")
    args = parser.parse_args(argv)
    if not args.corpus.is_dir():
        skip(f"no real-face corpus at {args.corpus} (--corpus; not part of the repository)", __file__)
    args.cache.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in args.corpus.glob("*.mp4") if p.name not in HELD_OUT)
    data = [clip_opening(args.corpus / n, args.cache) for n in tqdm(names, desc="clips", unit="clip")]
    features = [frame_features(wave, MODEL_FPS, len(opening)) for opening, wave in data]
    openings = [opening for opening, _ in data]
    model = MouthFromAudio.fit(features, openings, args.alpha, names)
    model.save(WEIGHTS)
    predicted = held_out_r(features, openings, args.alpha)
    loud = [loudness_r(wave, opening) for opening, wave in data]
    report = {"alpha": args.alpha, "clips": len(names), "held_out_people": list(HELD_OUT),
              "r_predicted_mean": round(float(np.mean(predicted)), 3),
              "r_loudness_mean": round(float(np.mean(loud)), 3),
              "per_clip": [{"clip": n, "r_predicted": round(p, 3), "r_loudness": round(q, 3)}
                           for n, p, q in zip(names, predicted, loud)]}
    results.json(args.report, report)
    print(json.dumps({k: v for k, v in report.items() if k != "per_clip"}))


if __name__ == "__main__":
    main()
