"""Where benchmark results go and what each one records about how it was made (issue 30).

Every ``benchmarks/`` script writes its files through :class:`Results`: ``bench_results/NAME.json`` gets a
``written_by`` block first (the command, git commit, torch version, machine, wall minutes) and
``NAME.md`` the same as one italic line at the top (under its title); both are written to a temporary name and renamed, so
a killed run leaves the previous result whole. ``bench_results/README.md`` lists every file there and
the command that writes it (``tests/test_bench_results.py`` keeps the two in step).

A benchmark that cannot run on this machine (no GPU, no real-face corpus) calls :func:`skip`: one line
``skipped NAME: why`` and exit status :data:`SKIPPED`, which ``make bench`` counts as a skip and any
other non-zero status as a failure.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from lipsync.assets import ROOT
from lipsync.media import atomic_path

RESULTS = ROOT / "bench_results"
SKIPPED = 77  # the "skipped" exit status of automake's test harness


def in_checkout(path: str | os.PathLike) -> str:
    """``path`` relative to the checkout when inside it: no machine path in the committed results."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def command_line(argv: Sequence[str]) -> str:
    """``python benchmarks/bench_x.py --a 1`` from ``sys.argv``-style ``argv`` (the script's path in the
    checkout)."""
    return shlex.join(["python", in_checkout(argv[0]), *argv[1:]])


def git_commit() -> str | None:
    """The checkout's commit, ``+dirty`` when tracked files other than results differ from it; None outside
    a git checkout."""
    try:
        commit = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench_results")
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def machine() -> dict[str, Any]:
    """CPU model, its cores and the ones this process may use, and the CUDA GPU torch sees (None without)."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": _cpu_model(), "cpu_cores": os.cpu_count(), "usable_cores": usable, "gpu": gpu}


def _cpu_model() -> str:
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


class Results:
    """The result files of one benchmark command, each stamped with how it was made.

    Args:
        argv: the command line (default ``sys.argv``), recorded as ``python SCRIPT ARGS``.
        started: ``time.monotonic()`` at the command's start (default: now); wall minutes count from it.
    """

    def __init__(self, argv: Sequence[str] | None = None, started: float | None = None) -> None:
        self.command = command_line(sys.argv if argv is None else argv)
        self.started = time.monotonic() if started is None else started

    def written_by(self, **extra: Any) -> dict[str, Any]:
        """The block every result carries; ``extra`` adds keys (e.g. what a published run was made by)."""
        import torch

        return {"command": self.command, "commit": git_commit(), "torch": torch.__version__,
                "python": platform.python_version(), "machine": machine(),
                "wall_minutes": round((time.monotonic() - self.started) / 60, 2),
                "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), **extra}

    def json(self, path: str | os.PathLike, result: dict, encode: Callable[[dict], str] | None = None,
             **extra: Any) -> Path:
        """Write ``{"written_by": ..., **result}`` to ``path``, as ``encode`` makes it (default: indented
        JSON)."""
        stamped = {"written_by": self.written_by(**extra), **result}
        return self._write(path, (encode or _indented)(stamped).rstrip() + "\n")

    def markdown(self, path: str | os.PathLike, text: str, **extra: Any) -> Path:
        """Write ``text`` to ``path`` with one italic line that says how it was made: first, or under the
        title when ``text`` begins with one (``# ...``)."""
        title, body = text.split("\n", 1) if text.startswith("# ") else ("", text)
        top = f"{title}\n\n" if title else ""
        return self._write(path, f"{top}{stamp(self.written_by(**extra))}\n\n{body.strip()}\n")

    @staticmethod
    def _write(path: str | os.PathLike, text: str) -> Path:
        with atomic_path(path) as tmp:
            tmp.write_text(text)
        return Path(path)


def _indented(result: dict) -> str:
    return json.dumps(result, indent=1)


def stamp(w: dict[str, Any]) -> str:
    """The markdown line of a ``written_by`` block."""
    m = w["machine"]
    gpu = f", {m['gpu']}" if m["gpu"] else ""
    where = f"{m['cpu']}, {m['usable_cores']} of {m['cpu_cores']} cores{gpu}"
    commit = (w["commit"] or "no git")[:12] + ("+dirty" if (w["commit"] or "").endswith("+dirty") else "")
    made = f"; results of `{w['made_by']}`" if "made_by" in w else ""
    return (f"_Written by `{w['command']}`{made} at commit {commit}, {w['date']}: {w['wall_minutes']} min on "
            f"{where}; torch {w['torch']}._")


def skip(reason: str, argv0: str | None = None) -> NoReturn:
    """Say in one line why this benchmark cannot run here, and exit with :data:`SKIPPED`."""
    print(f"skipped {Path(argv0 or sys.argv[0]).stem}: {reason}", flush=True)
    raise SystemExit(SKIPPED)
