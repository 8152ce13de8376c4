"""Speaker choice (``options.face=speaker``) on real two-person scenes built from the realfaces corpus.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_speaker_choice.py [--corpus ../shared/realfaces]
        [--out outputs/speaker_choice_real] [--report bench_results/speaker_choice_real.json]

Two real talking heads side by side (:mod:`lipsync.evaluate.real_scenes`): the soundtrack is one of them's
own sound, the other talks to muted speech. Per ordered pair (speaker, muted talker): the speaker small
and the talker large, the reverse, and a scene with a cut after which the two swap sides and the one
heard is drawn again. The MediaPipe backend finds the faces, as the CLI's default does; each scene's
face tracks are kept beside it (``scene.mp4.tracks.npz``) and reused when the scene is measured again,
so changing the speaker rule reruns in minutes. Outcomes per true shot
(:func:`~lipsync.evaluate.real_scenes.shot_outcomes`): correct, wrong, or an announced fallback.

Two sets, never mixed: ``tune`` pairs people of the tuning clips only (the speaker rule's thresholds
and its mouth-from-audio predictor were fitted on them); ``confirm`` pairs each involve one of the
held-out people (:data:`~lipsync.evaluate.real_scenes.HELD_OUT`), used only to confirm. Scenes are written under ``--out``
(git-ignored: they hold the corpus's pixels); the report holds numbers and file names only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logging: warnings and up only

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from lipsync.benchresults import RESULTS, ROOT, Results, skip  # noqa: E402
from lipsync.data.face_tracks import FaceTracks  # noqa: E402
from lipsync.data.faces import LandmarkLayout, MediaPipeFaces  # noqa: E402
from lipsync.evaluate.real_scenes import (HELD_OUT, SAME_PERSON, Clip, Shot, ShotOutcome,  # noqa: E402
                                          compose, load_clip, shot_outcomes, write_real_scene)
from lipsync.infer.face_choice import SpeakerRule, choose_in_tracks  # noqa: E402
from lipsync.infer.mouth_from_audio import shipped  # noqa: E402
from lipsync.infer.tracking import track_all_faces  # noqa: E402
from lipsync.media import MODEL_FPS, atomic_path, read_frames  # noqa: E402

MAX_SHOT = 150  # frames (6 s): a one-shot scene's length at most; a cut scene's two shots share it
PARTNERS = 3  # muted talkers drawn per speaker (tune), and per held-out person in each role (confirm)


def ordered_pairs(names: list[str], held_out: tuple[str, ...], rng: np.random.Generator
                  ) -> dict[str, list[tuple[str, str]]]:
    """(speaker, muted talker) pairs: ``tune`` among the tuning clips, ``confirm`` with a held-out one."""
    tune = [n for n in names if n not in held_out]
    pairs: dict[str, list[tuple[str, str]]] = {"tune": [], "confirm": []}
    for a in tune:
        pairs["tune"] += [(a, b) for b in rng.choice([b for b in tune if b != a], PARTNERS, replace=False)]
    for h in [n for n in names if n in held_out]:
        others = [b for b in names if b != h and frozenset((h, b)) not in SAME_PERSON]
        pairs["confirm"] += [(h, b) for b in rng.choice(others, PARTNERS, replace=False)]
        pairs["confirm"] += [(b, h) for b in rng.choice(others, PARTNERS, replace=False)]
    return {k: [(str(a), str(b)) for a, b in v] for k, v in pairs.items()}


def pair_scenes(speaker: Clip, talker: Clip, rng: np.random.Generator) -> dict[str, list[Shot]]:
    """The three scenes of one pair: ``small`` (the speaker small), ``large``, and ``cut`` (the speaker
    small in the first shot; in the second the two swap sides, each keeping its size, and the one heard
    is drawn again: the small or the large one)."""
    n = min(speaker.num_frames, talker.num_frames, MAX_SHOT)
    large = int(rng.integers(224, 257))
    small = int(round(large * rng.uniform(0.5, 0.7)))
    side = int(rng.integers(2))  # the speaker's side: 0 left, 1 right

    def shot(speaker_size: int, other_size: int, start: int, frames: int, swap: bool = False) -> Shot:
        clips, sizes = (speaker.name, talker.name), (speaker_size, other_size)
        if side == 1 - swap:
            clips, sizes = clips[::-1], sizes[::-1]
        return Shot(clips, sizes, int(rng.integers(2)) if swap else side, start, frames)

    return {"small": [shot(small, large, 0, n)], "large": [shot(large, small, 0, n)],
            "cut": [shot(small, large, 0, n // 2), shot(small, large, n // 2, n - n // 2, swap=True)]}


def save_tracks(tracks: FaceTracks, path: Path) -> None:
    """The face tracks of a scene (boxes and lip / lower-face points, no pixels), atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, boxes=tracks.boxes, landmarks=tracks.landmarks, cuts=np.array(tracks.cuts, np.int64),
                 mouth_idx=tracks.layout.mouth_idx, lower_face_idx=tracks.layout.lower_face_idx)


def load_tracks(path: Path) -> FaceTracks:
    """What :func:`save_tracks` wrote."""
    with np.load(path) as z:
        layout = LandmarkLayout("custom", z["mouth_idx"], z["lower_face_idx"])
        return FaceTracks(z["boxes"], z["landmarks"], layout, z["cuts"].tolist())


def scene_tracks(video: Path) -> FaceTracks:
    """The scene's face tracks (MediaPipe, as the CLI finds them), from the cache beside it when there."""
    cache = Path(f"{video}.tracks.npz")
    if not cache.exists():
        save_tracks(track_all_faces(iter(read_frames(video)), MediaPipeFaces(), video), cache)
    return load_tracks(cache)


def measure_scene(video: Path, rule: SpeakerRule) -> list[ShotOutcome]:
    """``face=speaker`` on one written scene, one outcome per true shot."""
    with np.load(f"{video}.truth.npz") as truth:
        tiles, speaker, cuts = truth["tiles"], truth["speaker"], truth["cuts"].tolist()
    selection = choose_in_tracks(scene_tracks(video), video, float(MODEL_FPS), "speaker", rule)
    return shot_outcomes(selection, tiles, speaker, cuts)


def build_set(corpus: Path, out: Path, pairs: list[tuple[str, str]], name: str, seed: int) -> list[dict]:
    """Write (or reuse) every scene of one set; one row per scene: its name, clips and kind."""
    rows, clips = [], {}
    rng = np.random.default_rng([seed, ("tune", "confirm").index(name)])
    for k, (a, b) in enumerate(tqdm(pairs, desc=f"{name} scenes", unit="pair")):
        for c in (a, b):
            clips[c] = clips.get(c) or load_clip(corpus / c)
        for kind, shots in pair_scenes(clips[a], clips[b], rng).items():
            video = out / f"{name}_{k:03d}_{kind}.mp4"
            if not video.exists():
                write_real_scene(compose(shots, clips), video)
            rows.append({"video": video.name, "set": name, "kind": kind, "speaker": a, "talker": b,
                         "shots": [asdict(s) for s in shots]})
    return rows


def summarise(outcomes: list[dict]) -> dict:
    """Counts and fractions of correct / wrong / fallback shots (and of fallbacks that dubbed the speaker
    anyway, the largest face being the speaker)."""
    n = len(outcomes)
    counts = {k: sum(o["outcome"] == k for o in outcomes) for k in ("correct", "wrong", "fallback")}
    counts["fallback_on_speaker"] = sum(o["outcome"] == "fallback" and o["on_speaker"] >= 0.9
                                        for o in outcomes)
    return {"shots": n, **counts, **{f"{k}_rate": round(v / max(n, 1), 4) for k, v in counts.items()}}


GROUPS = {  # name -> which shots of a set it holds (``o``: an outcome with its scene's fields)
    "all": lambda o: True,
    "small": lambda o: o["kind"] == "small",  # the speaker small, the muted talker large (issue 26's case)
    "large": lambda o: o["kind"] == "large",
    "cut": lambda o: o["kind"] == "cut",
    "heard held-out": lambda o: o["heard"] in HELD_OUT,
    "muted held-out": lambda o: o["muted"] in HELD_OUT,
}


def set_summary(scenes: list[dict]) -> dict:
    """Per group of shots, :func:`summarise`; per clip heard, its correct / wrong / fallback counts."""
    shots = []
    for scene in scenes:
        for o, shot in zip(scene["outcomes"], scene["shots"]):
            heard, muted = shot["clips"][shot["speaker"]], shot["clips"][1 - shot["speaker"]]
            shots.append(o | {"kind": scene["kind"], "heard": heard, "muted": muted})
    groups = {g: summarise([o for o in shots if keep(o)]) for g, keep in GROUPS.items()}
    clips = sorted({o["heard"] for o in shots})
    by_heard = {c: summarise([o for o in shots if o["heard"] == c]) for c in clips}
    return {**groups, "by_heard_clip": by_heard}


def run(args: argparse.Namespace, results: Results) -> dict:
    """Build the sets, measure every scene, print the summaries and write the report."""
    names = sorted(p.name for p in args.corpus.glob("*.mp4"))
    pairs = ordered_pairs(names, HELD_OUT, np.random.default_rng(args.seed))
    args.out.mkdir(parents=True, exist_ok=True)
    rule, started = SpeakerRule(), time.perf_counter()
    report: dict = {"backend": "mediapipe", "rule": asdict(rule), "held_out": list(HELD_OUT),
                    "predictor_trained_on": list(shipped().trained_on), "sets": {}}
    for name in args.sets:
        scenes = build_set(args.corpus, args.out, pairs[name], name, args.seed)
        for row in tqdm(scenes, desc=f"{name} choice", unit="scene"):
            row["outcomes"] = [asdict(o) for o in measure_scene(args.out / row["video"], rule)]
        report["sets"][name] = {**set_summary(scenes), "scenes": scenes}
        print(name, json.dumps(report["sets"][name]["all"]))
    report["seconds"] = round(time.perf_counter() - started, 1)
    if args.report:
        write_report(report, args.report, results)
    return report


def markdown(report: dict) -> str:
    """The report as tables: per set and group of shots, per clip heard, then one row per shot."""
    lines = ["# Speaker choice on real two-person scenes (`options.face=speaker`)", "",
             f"{report['seconds']} s on one core, face tracks reused when cached. Backend: MediaPipe. "
             "The tune set pairs tuning people only (the rule's thresholds and the mouth-from-audio "
             "predictor were fitted on them: in-sample); the confirm "
             f"set's pairs each hold a held-out person ({', '.join(report['held_out'])}).", "",
             "| set | shots | correct | wrong | announced fallback (of which the largest face was the "
             "speaker) |",
             "|---|---|---|---|---|"]
    for name, data in report["sets"].items():
        for group in GROUPS:
            s = data[group]
            if not s["shots"]:
                continue
            lines.append(f"| {name}: {group} | {s['shots']} | {s['correct_rate']:.1%} | "
                         f"{s['wrong_rate']:.1%} | {s['fallback_rate']:.1%} ({s['fallback_on_speaker']}) |")
    lines += ["", "| set | clip heard | shots | correct | wrong | fallback |", "|---|---|---|---|---|---|"]
    for name, data in report["sets"].items():
        for clip, s in data["by_heard_clip"].items():
            lines.append(f"| {name} | {clip} | {s['shots']} | {s['correct']} | {s['wrong']} | "
                         f"{s['fallback']} |")
    lines += ["", "| scene | shot | heard | muted | outcome | speaker score | other score |",
              "|---|---|---|---|---|---|---|"]
    for data in report["sets"].values():
        for row in data["scenes"]:
            for o, shot in zip(row["outcomes"], row["shots"]):
                heard, muted = shot["clips"][shot["speaker"]], shot["clips"][1 - shot["speaker"]]
                lines.append(f"| {row['video']} | {o['shot']} | {heard} | {muted} | {o['outcome']} | "
                             f"{o['speaker_score']:.2f} | {o['other_score']:.2f} |")
    return "\n".join(lines) + "\n"


def report_json(report: dict) -> str:
    """The report as indented JSON, but each scene on one line (a scene is read in the .md's table)."""
    marker = "@scenes of {}@"
    sets = {k: {**v, "scenes": [marker.format(k)]} for k, v in report["sets"].items()}
    text = json.dumps({**report, "sets": sets}, indent=1)
    for name, data in report["sets"].items():
        rows = ",\n    ".join(json.dumps(row) for row in data["scenes"])
        text = text.replace(json.dumps(marker.format(name)), "\n    " + rows)
    return text


def write_report(report: dict, path: Path, results: Results) -> None:
    """``path`` (JSON) and the same name with ``.md``."""
    results.json(path, report, encode=report_json)
    results.markdown(path.with_suffix(".md"), markdown(report))


def main(argv: list[str] | None = None) -> None:
    results = Results([__file__, *(sys.argv[1:] if argv is None else argv)])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "realfaces")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "speaker_choice_real")
    parser.add_argument("--report", type=Path, default=RESULTS / "speaker_choice_real.json")
    parser.add_argument("--sets", nargs="+", choices=["tune", "confirm"], default=["tune", "confirm"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.corpus.is_dir():
        skip(f"no real-face corpus at {args.corpus} (--corpus; not part of the repository)", __file__)
    run(args, results)


if __name__ == "__main__":
    main()
