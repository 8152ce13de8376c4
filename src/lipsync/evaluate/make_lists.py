"""The seeded lists of 30 test videos per dataset (SPEC section 7: "30 random test videos each").

    python -m lipsync.evaluate.make_lists            # redraw data/eval_lists/*_test30.txt (official IDs)
    python -m lipsync.evaluate.make_lists DATA_DIR   # draw from what DATA_DIR/hdtf, DATA_DIR/avaspeech hold

Procedure: the candidate IDs sorted, then ``random.Random(2502).sample(ids, 30)``, written sorted. The
official candidates shipped in ``data/eval_lists/`` (see its README): ``hdtf_all.txt``, every clip the
HDTF annotation files define (``<subset>_<video>_<clip:03d>``, the names HDTF's download script gives),
and ``avaspeech_all.txt``, the 160 video IDs of AVA-Speech's ``ava_speech_file_names_v1.txt``. Neither
dataset defines a test split, so the draw is over all of them. From a DATA_DIR, the candidates are the
file stems found there, and the lists are written beside the data (``DATA_DIR/<dataset>_test30.txt``).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from lipsync.assets import ROOT
from lipsync.evaluate.score import VIDEO_SUFFIXES

SEED = 2502  # the paper's arXiv number (2502.11515)
SIZE = 30
LISTS_DIR = ROOT / "data" / "eval_lists"
DATASETS = ("hdtf", "avaspeech")


def draw(ids: list[str], size: int = SIZE, seed: int = SEED) -> list[str]:
    """``size`` IDs drawn without replacement, reproducibly (input order does not matter); all if fewer."""
    pool = sorted(set(ids))
    return sorted(random.Random(seed).sample(pool, min(size, len(pool))))


def read_list(path: str | Path) -> list[str]:
    """IDs of a list file, one per line (blank lines and ``#`` comments skipped)."""
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines())
    return [line for line in lines if line]


def write_list(path: Path, ids: list[str], header: str) -> Path:
    path.write_text(f"# {header}\n" + "\n".join(ids) + "\n")
    return path


def videos_in(folder: Path) -> list[Path]:
    """Video files directly in ``folder``, sorted."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)


def listed_videos(data_dir: str | Path, dataset: str, list_path: str | Path | None = None) -> list[Path]:
    """The files of a dataset's test list in ``data_dir/<dataset>/``: ``<id>.*`` or clips named ``<id>_*``.

    Raises:
        ValueError: the folder has none of the listed videos (names the folder and the list).
    """
    list_path = Path(list_path) if list_path else LISTS_DIR / f"{dataset}_test30.txt"
    folder = Path(data_dir) / dataset
    files = videos_in(folder)
    ids = read_list(list_path)
    chosen = [f for f in files if any(f.stem == i or f.stem.startswith(i + "_") for i in ids)]
    if not chosen:
        raise ValueError(f"none of the {list_path.name} videos is in {folder}: expected files named <id>.mp4 "
                         f"(see data/eval_lists/README.md), or draw a list from your data with "
                         f"`python -m lipsync.evaluate.make_lists {data_dir}`")
    return chosen


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        for name in DATASETS:
            ids = read_list(LISTS_DIR / f"{name}_all.txt")
            path = write_list(LISTS_DIR / f"{name}_test{SIZE}.txt", draw(ids),
                              f"random.Random({SEED}).sample(sorted {name}_all.txt ({len(ids)} IDs), {SIZE})")
            print(f"wrote {path}")
        return 0
    data_dir = Path(args[0])
    for name in DATASETS:
        ids = [p.stem for p in videos_in(data_dir / name)]
        if not ids:
            print(f"{data_dir / name}: no videos, no list")
            continue
        path = write_list(data_dir / f"{name}_test{SIZE}.txt", draw(ids),
                          f"random.Random({SEED}).sample(sorted stems in {data_dir / name} "
                          f"({len(ids)}), {SIZE})")
        print(f"wrote {path} ({min(SIZE, len(ids))} of {len(ids)} videos)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
