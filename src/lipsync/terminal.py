"""What a lipsync command shows on the terminal: its own warnings and decisions, one line each, and not
the native libraries' log lines.

MediaPipe (absl) and TensorFlow Lite log from C++ straight to file descriptor 2: a dub printed dozens
of "W0000 ... Feedback manager requires a model with a single signature inference" and "Created
TensorFlow Lite XNNPACK delegate" lines between its progress bars, and ``GLOG_minloglevel`` /
``TF_CPP_MIN_LOG_LEVEL`` no longer reach them (mediapipe 0.10 logs through absl). So a command
(:func:`configure`, called by every entry point of :mod:`lipsync.cli`) moves Python's own ``sys.stderr``
onto a copy of descriptor 2, and :func:`quiet_native` points descriptor 2 itself at ``/dev/null`` around
the code that runs those libraries: progress bars, warnings and errors still reach the terminal, the
native lines do not. Outside those blocks descriptor 2 is untouched (a stage started as a subprocess
writes its errors where it always did).

``LIPSYNC_VERBOSE=1`` in the environment shows the native lines again. Library use (a notebook, the
tests) changes nothing unless it calls :func:`configure` itself.

The configs of the one-shot commands (infer, prepare, finetune) switch Hydra's job logging off (no log
files, no run directory), which also silenced lipsync's own ``log.warning`` calls (a face-choice
fallback, say); :func:`show_own_logs` shows them again, one line each: ``lipsync-infer: warning: ...``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from typing import Any, Iterator

VERBOSE_ENV = "LIPSYNC_VERBOSE"
QUIET_ENV = "LIPSYNC_QUIET_NATIVE"  # set by configure(): worker processes a command spawns stay quiet too

# depth: quiet_native blocks open in any thread; saved: the terminal's descriptor 2 while they are
_state: dict[str, Any] = {"stderr_moved": False, "depth": 0, "saved": -1}
_lock = threading.Lock()


def one_line(err: BaseException | str, last: bool = False) -> str:
    """A message on one line: every run of whitespace, newlines included, made one space; ``last``: only
    its last non-empty line (where Hydra's ``instantiate`` and ``load_state_dict`` put the cause)."""
    text = str(err)
    if last:
        lines = text.strip().splitlines()
        text = lines[-1] if lines else ""
    return " ".join(text.split())


def verbose() -> bool:
    """Whether the user asked for the native libraries' log lines (``LIPSYNC_VERBOSE=1``)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def configure() -> None:
    """For a command-line entry point, before any work: native log lines off (unless :func:`verbose`).
    Does nothing where ``sys.stderr`` is not the process's own (pytest's capture, say)."""
    if verbose() or sys.stderr is None or sys.stderr is not sys.__stderr__:
        return
    if _move_stderr():
        os.environ[QUIET_ENV] = "1"


def _move_stderr() -> bool:
    """Python's ``sys.stderr`` onto a copy of descriptor 2 (once), so :func:`quiet_native` spares it;
    False where ``sys.stderr`` is not a file on descriptor 2 (then nothing is silenced)."""
    if _state["stderr_moved"]:
        return True
    old = sys.stderr
    try:
        if old is None or old.fileno() != 2:
            return False
        old.flush()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both of the last two
        return False
    sys.stderr = os.fdopen(os.dup(2), "w", buffering=1, encoding=old.encoding, errors=old.errors)
    _state["stderr_moved"] = True
    return True


@contextlib.contextmanager
def quiet_native() -> Iterator[None]:
    """Descriptor 2 at ``/dev/null`` for the block, when a command asked for it (:func:`configure`)."""
    # _move_stderr: a no-op in the command's own process; a worker process it spawned moves its own here
    if verbose() or os.environ.get(QUIET_ENV) != "1" or not _move_stderr():
        yield
        return
    with _lock:  # blocks may overlap in threads (the app's jobs): first in redirects, last out restores
        if not _state["depth"]:
            sys.stderr.flush()
            _state["saved"] = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        _state["depth"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["depth"] -= 1
            if not _state["depth"]:
                os.dup2(_state["saved"], 2)
                os.close(_state["saved"])


class OneLine(logging.Formatter):
    """``{prog}: message`` (INFO) or ``{prog}: warning: message``, every run of whitespace one space."""

    def __init__(self, prog: str) -> None:
        super().__init__()
        self.prog = prog

    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno <= logging.INFO else f"{record.levelname.lower()}: "
        return f"{self.prog}: {level}{one_line(record.getMessage())}"


def show_own_logs(prog: str) -> None:
    """lipsync's own log records (INFO and up) on stderr, one line each, where nothing else shows them: the
    root logger has no handler (a Hydra command whose config has ``job_logging: disabled``)."""
    if logging.getLogger().handlers:
        return  # Hydra's default job logging prints them already (train, evaluate)
    for name, logger in logging.root.manager.loggerDict.items():
        if name.split(".")[0] == "lipsync" and isinstance(logger, logging.Logger):
            logger.disabled = False  # job_logging: disabled sets disable_existing_loggers
    own = logging.getLogger("lipsync")
    own.setLevel(logging.INFO)
    if not any(isinstance(h.formatter, OneLine) for h in own.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(OneLine(prog))
        own.addHandler(handler)
