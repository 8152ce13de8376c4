"""The seeded lists of 30 test videos per dataset (SPEC section 7: "30 random test videos each").

    python -m lipsync.evaluate.make_lists            # redraw data/eval_lists/*_test30.txt (official IDs)
    python -m lipsync.evaluate.make_lists DATA_DIR   # draw from what DATA_DIR/hdtf, DATA_DIR/avaspeech hold

Procedure: the candidate IDs sorted, then ``random.Random(2502).sample(ids, 30)``, written sorted. The
official candidates shipped in ``data/eval_lists/`` (see its README): ``hdtf_all.txt``, every clip the
HDTF annotation files define (``<subset>_<video>_<clip:03d>``, the names HDTF's download script gives),
and ``avaspeech_all.txt``, the 160 video IDs of AVA-Speech's ``ava_speech_file_names_v1.txt``. Neither
dataset defines a test split, so the draw is over all of them. From a DATA_DIR, the candidates are the
file stems found there, and the lists are written beside the data (``DATA_DIR/<dataset>_test30.txt``).

Which list a run reads (:func:`find_list`): ``DATA_DIR/<dataset>_test30.txt`` when it exists (the one
``make_lists DATA_DIR`` wrote), else the official ``data/eval_lists/<dataset>_test30.txt``. Listed IDs
with no file in ``DATA_DIR/<dataset>/`` are kept as ``missing`` (:class:`ListedVideos`), never dropped
silently.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
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


def list_name(dataset: str) -> str:
    """The file name of a dataset's test list: ``<dataset>_test30.txt``."""
    return f"{dataset}_test{SIZE}.txt"


def find_list(data_dir: str | Path, dataset: str) -> Path:
    """The list a run reads: ``data_dir/<dataset>_test30.txt`` if there (``make_lists DATA_DIR`` wrote it),
    else the official one in ``data/eval_lists/``."""
    beside = Path(data_dir) / list_name(dataset)
    return beside if beside.is_file() else LISTS_DIR / list_name(dataset)


@dataclass(frozen=True)
class ListedVideos:
    """A test list matched against the files of a dataset folder."""

    list_path: Path
    ids: tuple[str, ...]  # every ID of the list
    videos: tuple[Path, ...]  # the files of listed IDs: <id>.* or clips <id>_*.*, sorted
    missing: tuple[str, ...]  # listed IDs with no file

    def as_json(self) -> dict:
        """What metrics.json records per dataset: the list, how many it names, which had no file."""
        return {"list": str(self.list_path), "listed": len(self.ids), "missing": list(self.missing)}


def _is_clip_of(stem: str, video_id: str) -> bool:
    return stem == video_id or stem.startswith(video_id + "_")


def listed_videos(data_dir: str | Path, dataset: str, list_path: str | Path | None = None) -> ListedVideos:
    """The files of a dataset's test list (default :func:`find_list`) in ``data_dir/<dataset>/``.

    Raises:
        ValueError: the folder has none of the listed videos (names the folder and the list).
    """
    list_path = Path(list_path) if list_path else find_list(data_dir, dataset)
    folder = Path(data_dir) / dataset
    files, ids = videos_in(folder), read_list(list_path)
    chosen = tuple(f for f in files if any(_is_clip_of(f.stem, i) for i in ids))
    if not chosen:
        raise ValueError(f"none of the {list_path} videos is in {folder}: expected files named <id>.mp4 "
                         f"(see data/eval_lists/README.md), or draw a list from your data with "
                         f"`python -m lipsync.evaluate.make_lists {data_dir}`")
    missing = tuple(i for i in ids if not any(_is_clip_of(f.stem, i) for f in chosen))
    return ListedVideos(list_path, tuple(ids), chosen, missing)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        for name in DATASETS:
            ids = read_list(LISTS_DIR / f"{name}_all.txt")
            path = write_list(LISTS_DIR / list_name(name), draw(ids),
                              f"random.Random({SEED}).sample(sorted {name}_all.txt ({len(ids)} IDs), {SIZE})")
            print(f"wrote {path}")
        return 0
    data_dir = Path(args[0])
    for name in DATASETS:
        ids = [p.stem for p in videos_in(data_dir / name)]
        if not ids:
            print(f"{data_dir / name}: no videos, no list")
            continue
        path = write_list(data_dir / list_name(name), draw(ids),
                          f"random.Random({SEED}).sample(sorted stems in {data_dir / name} "
                          f"({len(ids)}), {SIZE})")
        print(f"wrote {path} ({min(SIZE, len(ids))} of {len(ids)} videos; "
              f"`make eval DATA={data_dir}` reads it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
