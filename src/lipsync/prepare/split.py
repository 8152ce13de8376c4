"""A committed people-and-time split of a real talking-face corpus, cut into folders ``prepare`` reads.

The split file (``data/realfaces/split.json``) names files only: ``heldout_people`` are whole people never
trained on; every clip of ``train_people`` is cut at ``1 - tail_fraction`` of its frames, the head for
training and the tail held out in time. Cutting the media (instead of teaching ``prepare`` a time window)
keeps every later stage unchanged: each part is an ordinary folder of videos with their own sound, and no
pixel of a tail can reach training as a reference frame either.

    python -m lipsync.prepare.split data/realfaces/split.json outputs/realfaces/split

writes ``train/`` (heads), ``tail/`` (tails), ``heldout/`` (whole held-out clips) and ``split.json`` (the
frames each part holds). Parts are written atomically; a rerun skips the parts already there.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from lipsync import media
from lipsync.cli import ArgumentParser, user_errors

PARTS = ("train", "tail", "heldout")


@dataclass(frozen=True)
class Part:
    """One output file of the split: ``frames [start, stop)`` of ``source``."""

    part: str  # train | tail | heldout
    person: str
    source: str  # file name in the corpus
    start: int
    stop: int
    fps: float


def load_split(path: str | os.PathLike) -> dict:
    """The split file, checked: no person or file listed twice, a tail fraction in (0, 1). Its ``corpus``
    is relative to the repository root (where the commands run)."""
    path = Path(path)
    split = json.loads(path.read_text())
    people = {**split["heldout_people"], **split["train_people"]}
    files = [f for fs in people.values() for f in fs]
    if len(people) != len(split["heldout_people"]) + len(split["train_people"]) or len(set(files)) != len(files):
        raise ValueError(f"{path}: a person or a file is listed twice")
    if not 0.0 < float(split["tail_fraction"]) < 1.0:
        raise ValueError(f"{path}: tail_fraction={split['tail_fraction']} must lie in (0, 1)")
    return split


def plan(split: dict, corpus: Path) -> list[Part]:
    """The parts to write: heads and tails of training people's clips, whole held-out clips."""
    parts = []
    for person, files in split["heldout_people"].items():
        for f in files:
            info = media.probe(corpus / f)
            parts.append(Part("heldout", person, f, 0, info.num_frames, float(info.fps)))
    for person, files in split["train_people"].items():
        for f in files:
            info = media.probe(corpus / f)
            cut = tail_start(info.num_frames, float(split["tail_fraction"]))
            parts.append(Part("train", person, f, 0, cut, float(info.fps)))
            parts.append(Part("tail", person, f, cut, info.num_frames, float(info.fps)))
    return parts


def tail_start(num_frames: int, tail_fraction: float) -> int:
    """First frame of the held-out tail: the last ``tail_fraction`` of the frames (rounded)."""
    return num_frames - int(round(num_frames * tail_fraction))


def cut(part: Part, corpus: Path, out: Path) -> Path:
    """Write ``part`` (its frames and the audio under them) to ``out/<part>/<source>``; the whole file is
    copied when the part is the whole clip."""
    src, dst = corpus / part.source, out / part.part / part.source
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        return dst
    info = media.probe(src)
    if part.start == 0 and part.stop == info.num_frames:
        with media.atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        return dst
    audio, rate = media.read_audio(src, sample_rate=None, mono=False)
    a0, a1 = (int(round(i / float(info.fps) * rate)) for i in (part.start, part.stop))
    with media.VideoWriter(dst, info.fps, info.width, info.height, audio=audio[:, a0:a1],
                           audio_rate=rate) as writer:
        for frame in media.iter_frames(src, part.start, part.stop):
            writer.write(frame)
    return dst


def run(split_file: str | os.PathLike, out: str | os.PathLike, corpus: str | os.PathLike | None = None) -> list[Part]:
    """Cut every part of the split into ``out``; returns the parts (also written to ``out/split.json``)."""
    split = load_split(split_file)
    corpus = Path(corpus or split["corpus"])
    if not corpus.is_dir():
        raise FileNotFoundError(f"corpus={corpus}: no such folder (the real-face clips; see {split_file})")
    out = Path(out)
    parts = plan(split, corpus)
    for part in tqdm(parts, desc="cutting the split", unit="file"):
        cut(part, corpus, out)
    with media.atomic_path(out / "split.json") as tmp:
        tmp.write_text(json.dumps([asdict(p) for p in parts], indent=1))
    return parts


def main(argv: list[str] | None = None) -> int:
    ap = ArgumentParser(prog="lipsync-prepare-split", description=__doc__.splitlines()[0])
    ap.add_argument("split", help="the split file, e.g. data/realfaces/split.json")
    ap.add_argument("out", help="output folder (gets train/, tail/, heldout/, split.json)")
    ap.add_argument("--corpus", help="the corpus folder (default: the split file's 'corpus')")
    args = ap.parse_args(argv)
    with user_errors("lipsync-prepare-split"):
        parts = run(args.split, args.out, args.corpus)
    counts = {p: sum(1 for x in parts if x.part == p) for p in PARTS}
    print(f"split: {counts['train']} heads, {counts['tail']} tails, {counts['heldout']} held-out clips in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
