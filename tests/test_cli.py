"""lipsync.cli: a user's mistake is one line and exit status 1; bugs keep their traceback."""

from __future__ import annotations

import pytest
from hydra.errors import InstantiationException

from lipsync.cli import one_line, user_errors


def test_user_errors_become_one_line_and_status_1(monkeypatch) -> None:
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as info, user_errors("lipsync-x"):
        raise FileNotFoundError("missing\n   weights.pt\tat  path")
    assert info.value.code == "lipsync-x: error: missing weights.pt at path"  # printed to stderr, status 1
    with pytest.raises(SystemExit, match="^lipsync-x: error: Error in call"), user_errors("lipsync-x"):
        raise InstantiationException("Error in call to target 'a.B':\nValueError('bad')")
    with pytest.raises(RuntimeError), user_errors("lipsync-x"):  # not a user error: the traceback stays
        raise RuntimeError("a bug")
    with user_errors("lipsync-x"):
        pass  # nothing raised, nothing done


def test_hydra_full_error_keeps_the_traceback(monkeypatch) -> None:
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ValueError, match="bad"), user_errors("lipsync-x"):
        raise ValueError("bad")
    assert one_line(ValueError(" a \n b ")) == "a b"
