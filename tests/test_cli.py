"""lipsync.cli: a user's mistake is one line and exit status 1; bugs keep their traceback."""

from __future__ import annotations

import os

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


# Every entry point, one bad argument each: found conf/ the same way, one line, status 1 (sys.exit(str)).
ENTRY_POINTS = {
    "train": ("lipsync.train", ["experiment=no_such_experiment"]),
    "prepare": ("lipsync.prepare.__main__", ["input=x", "output=y", "no_such_key=1"]),
    "synth": ("lipsync.synth.__main__", ["output=y", "seconds=[1"]),
    "infer": ("lipsync.infer.__main__", ["options=no_such_option"]),
    "evaluate": ("lipsync.evaluate.__main__", ["generated=x", "reference=y", "fid.no_such_key=1"]),
    "eval": ("lipsync.evaluate.run", ["+no_such=1", "~data_dir"]),
    "demo": ("lipsync.demo", ["out=x", "no_such_key=1"]),
    "app": ("lipsync.app.__main__", ["--port", "0"]),
    "summary": ("lipsync.summary", ["--frames", "sixteen"]),
    "convert": ("lipsync.infer.convert", ["no_such.ckpt", "out"]),
    "curves": ("lipsync.training.curves", ["no_such_run"]),
    "scenes": ("lipsync.evaluate.scenes", ["--out", "x", "--scenes", "0"]),
}


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_every_entry_point_turns_a_bad_argument_into_one_line_and_status_1(name, monkeypatch,
                                                                          tmp_path) -> None:
    import importlib

    module, args = ENTRY_POINTS[name]
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.chdir(tmp_path)
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as info:
        if name in ("app", "summary", "convert", "curves", "scenes"):
            main(args)
        else:
            monkeypatch.setattr("sys.argv", [f"lipsync-{name}", *args])
            main()
    message = info.value.code
    assert isinstance(message, str) and message.startswith(f"lipsync-{name}: error: "), message
    assert "\n" not in message
    assert "HYDRA_FULL_ERROR" not in os.environ  # restored: a stage's subprocesses see the user's setting
