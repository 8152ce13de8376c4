"""A clean terminal (issue 30): MediaPipe's and TensorFlow Lite's native log lines are dropped in a command
unless ``LIPSYNC_VERBOSE=1``, while lipsync's own warnings and decisions show, one line each, and Python's
stderr (progress bars, errors) still reaches the terminal while the native lines are dropped."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from lipsync.assets import asset_path, ensure_assets
from lipsync.terminal import OneLine

ENV = {k: v for k, v in os.environ.items() if k not in ("LIPSYNC_VERBOSE", "LIPSYNC_QUIET_NATIVE")}
ENV |= {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}

# A command's start (lipsync.cli does these two), then a face track on three carphone frames with a
# Python line written to stderr from inside it, then one warning and one decision of lipsync's own.
COMMAND = """
import logging, sys
from pathlib import Path
from lipsync import terminal
terminal.configure()
terminal.show_own_logs("lipsync-x")
from lipsync.data.faces import MediaPipeFaces
from lipsync.media import iter_frames

def frames():
    for i, frame in enumerate(iter_frames(sys.argv[1], 0, 3)):
        print(f"frame {i}", file=sys.stderr)  # as a progress bar inside the tracking writes
        yield i, frame

track = MediaPipeFaces().track(Path("clip"), frames())
log = logging.getLogger("lipsync.infer.face_choice")
log.warning("face=speaker: no soundtrack;\\n every shot uses the largest")
log.info("shot 0: dubbing track 0")
log.debug("not shown")
print(f"found {int(track.found.sum())}")
"""


@pytest.fixture(scope="module")
def clip() -> str:
    ensure_assets(names=["carphone_pristine.mp4"])
    return str(asset_path("carphone_pristine.mp4"))


def run(clip: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", COMMAND, clip], env=ENV | env, capture_output=True,
                          text=True, timeout=300)


def test_a_command_shows_its_own_lines_and_no_native_log_lines(clip: str) -> None:
    done = run(clip)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "found 3\n"
    assert done.stderr.splitlines() == [
        "frame 0", "frame 1", "frame 2",
        "lipsync-x: warning: face=speaker: no soundtrack; every shot uses the largest",
        "lipsync-x: shot 0: dubbing track 0",
    ]


def test_lipsync_verbose_brings_the_native_lines_back(clip: str) -> None:
    done = run(clip, LIPSYNC_VERBOSE="1")
    assert done.returncode == 0 and done.stdout == "found 3\n", done.stderr
    lines = done.stderr.splitlines()
    assert "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." in lines
    assert any("inference_feedback_manager" in line for line in lines)
    assert lines[-2:] == ["lipsync-x: warning: face=speaker: no soundtrack; every shot uses the largest",
                          "lipsync-x: shot 0: dubbing track 0"]


def test_one_line_formatter_names_the_program_and_the_level() -> None:
    record = logging.LogRecord("lipsync.x", logging.ERROR, __file__, 1, "a\n  b %d", (3,), None)
    assert OneLine("lipsync-infer").format(record) == "lipsync-infer: error: a b 3"
    record.levelno = logging.INFO
    assert OneLine("lipsync-infer").format(record) == "lipsync-infer: a b 3"


OVERLAP = """
import os, sys
from lipsync import terminal
terminal.configure()
a, b = terminal.quiet_native(), terminal.quiet_native()
a.__enter__(); b.__enter__()           # two threads' blocks, ended out of order
os.write(2, b"native inside\\n")
a.__exit__(None, None, None)
os.write(2, b"native still inside\\n")
b.__exit__(None, None, None)
os.write(2, b"native after\\n")
print("python", file=sys.stderr)
"""


def test_overlapping_quiet_blocks_restore_descriptor_2_when_the_last_one_ends() -> None:
    done = subprocess.run([sys.executable, "-c", OVERLAP], env=ENV, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stderr.splitlines() == ["native after", "python"], done.stderr
