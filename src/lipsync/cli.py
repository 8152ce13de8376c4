"""What every ``python -m lipsync.*`` entry point shares: a user's mistake (a bad path, override, input
file or config) is one line on stderr and exit status 1, never a traceback.

    with user_errors("lipsync-train"):
        train(cfg)

``HYDRA_FULL_ERROR=1`` (Hydra's own switch) lets the exception through with its traceback, for debugging.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

# ValueError covers MediaError and CheckpointError; HydraException covers a failed `instantiate`.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, HydraException,
                                                OmegaConfBaseException)


def one_line(err: BaseException) -> str:
    """The exception's message with every run of whitespace, newlines included, made one space."""
    return " ".join(str(err).split())


@contextmanager
def user_errors(prog: str, errors: tuple[type[BaseException], ...] = USER_ERRORS) -> Iterator[None]:
    """Turn ``errors`` raised inside into ``{prog}: error: <message>`` and exit status 1."""
    try:
        yield
    except errors as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        sys.exit(f"{prog}: error: {one_line(err)}")
