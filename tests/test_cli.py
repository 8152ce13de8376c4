"""lipsync.cli: a user's mistake is one line and exit status 1; bugs keep their traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from hydra.errors import InstantiationException

from lipsync import cli
from lipsync.cli import user_errors
from lipsync.terminal import one_line


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
    "demo": ("lipsync.demo.__main__", ["out=x", "no_such_key=1"]),
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

    import torch

    module, args = ENTRY_POINTS[name]
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's explicit count: every CLI applies it first
    monkeypatch.chdir(tmp_path)
    main = importlib.import_module(module).main
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(SystemExit) as info:
            if name in ("app", "summary", "convert", "curves", "scenes"):
                main(args)
            else:
                monkeypatch.setattr("sys.argv", [f"lipsync-{name}", *args])
                main()
        assert torch.get_num_threads() == 3, "the CLI did not set its thread count before parsing"
    finally:
        torch.set_num_threads(before)
    message = info.value.code
    assert isinstance(message, str) and message.startswith(f"lipsync-{name}: error: "), message
    assert "\n" not in message
    assert "HYDRA_FULL_ERROR" not in os.environ  # restored: a stage's subprocesses see the user's setting


# --- the CPU thread convention (issue 18): one thread per usable core, passive OpenMP waiting ----------


def test_usable_cores_are_the_affinity_mask_capped_by_a_cgroup_quota(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5})
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(cli, "CGROUP_CPU_MAX", quota)
    assert cli.usable_cores() == 3  # no cgroup file: the affinity mask
    quota.write_text("max 100000\n")
    assert cli.usable_cores() == 3  # no quota
    quota.write_text("150000 100000\n")  # docker --cpus=1.5
    assert cli.usable_cores() == 1
    quota.write_text("50000 100000\n")
    assert cli.usable_cores() == 1  # never 0


def test_cpu_threads_take_the_users_setting_else_the_usable_cores(monkeypatch) -> None:
    monkeypatch.setattr(cli, "usable_cores", lambda: 5)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cli.cpu_threads() == 5
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert cli.cpu_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="OMP_NUM_THREADS='two'"):
        cli.cpu_threads()


def test_configure_threads_sets_torch_and_the_environment_of_child_stages(monkeypatch) -> None:
    import torch

    monkeypatch.setattr(cli, "usable_cores", lambda: 3)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    before = torch.get_num_threads()
    try:
        assert cli.configure_threads() == 3 and torch.get_num_threads() == 3
        assert os.environ["OMP_NUM_THREADS"] == "3" and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
        assert cli.configure_threads(2) == 2 and torch.get_num_threads() == 2  # a config's torch_threads
    finally:
        torch.set_num_threads(before)


def test_the_passive_wait_policy_is_set_before_any_lipsync_module_loads_torch() -> None:
    """OpenMP reads OMP_WAIT_POLICY once, when torch loads it: ``import lipsync.X`` must set it first."""
    import subprocess
    import sys

    code = ("import sys; import lipsync.infer.pipeline, os; "
            "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["PASSIVE", "True"]
    env["OMP_WAIT_POLICY"] = "ACTIVE"  # the user's own setting wins
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["ACTIVE", "True"]


def test_one_line_keeps_the_last_line_when_asked() -> None:
    err = RuntimeError("Error(s) in loading state_dict for Net:\n\tsize mismatch for w:  shape [2]\n")
    assert one_line(err, last=True) == "size mismatch for w: shape [2]"
    assert one_line(err) == "Error(s) in loading state_dict for Net: size mismatch for w: shape [2]"
    assert one_line(" \n ", last=True) == ""


def test_every_resolver_conf_uses_is_registered_in_one_place() -> None:
    used = {m for path in cli.config_dir().rglob("*.yaml")
            for m in re.findall(r"\$\{(\w+):", path.read_text())} - {"hydra", "now"}  # Hydra's own
    assert used and used <= set(cli.RESOLVERS), f"not in lipsync.cli.RESOLVERS: {used - set(cli.RESOLVERS)}"


def test_importing_an_entry_point_registers_no_resolver() -> None:
    code = ("from omegaconf import OmegaConf; import lipsync.cli, lipsync.evaluate.run, lipsync.train; "
            "from lipsync.cli import RESOLVERS, register_resolvers; "
            "print([n for n in RESOLVERS if OmegaConf.has_resolver(n)]); register_resolvers(); "
            "print([n for n in RESOLVERS if OmegaConf.has_resolver(n)])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["[]", str(list(cli.RESOLVERS))]
