"""What every ``python -m lipsync.*`` entry point shares: where ``conf/`` is, the config resolvers, and
that a user's mistake (a bad path, override, input file or config) is one line on stderr and exit
status 1, never a traceback.

    @hydra_main("train", "lipsync-train")       # Hydra entry points: conf/train.yaml
    def main(cfg: DictConfig) -> None: ...

    parser = ArgumentParser(prog="lipsync-curves")   # argparse entry points
    with user_errors("lipsync-curves"):
        run(parser.parse_args(argv))

``HYDRA_FULL_ERROR=1`` (Hydra's own switch) lets the exception through with its traceback, for debugging.

On the terminal (:mod:`lipsync.terminal`): lipsync's own warnings and decisions one line each, and no
native library log lines (MediaPipe, TensorFlow Lite) unless ``LIPSYNC_VERBOSE=1``.

Both kinds also set the CPU thread count deliberately before any work (:func:`configure_threads`): one
torch/OpenMP thread per core this process may use, threads that sleep rather than spin while they wait,
so a competing CPU-bound process slows a stage down by its share of the cores, not tenfold.

The config directory is found in this order: ``$LIPSYNC_CONF``, ``conf/`` inside the installed package,
``conf/`` at the root of a source checkout (:func:`config_dir`).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lipsync import terminal
from lipsync.assets import DEFAULT_DIR
from lipsync.terminal import one_line

CONF_ENV = "LIPSYNC_CONF"
FULL_ERROR = "HYDRA_FULL_ERROR"
THREADS_ENV = "OMP_NUM_THREADS"  # the user's explicit thread count (OpenMP's own variable) wins
WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"


def config_dir() -> Path:
    """The Hydra config directory: ``$LIPSYNC_CONF``, else the packaged ``conf/``, else the checkout's."""
    if os.environ.get(CONF_ENV):
        path = Path(os.environ[CONF_ENV]).expanduser().resolve()
        if not (path / "train.yaml").is_file():
            raise FileNotFoundError(f"${CONF_ENV}={path} has no train.yaml; point it at lipsync's conf/")
        return path
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no lipsync conf/train.yaml next to {here} or in the checkout; set ${CONF_ENV}")


def usable_cores() -> int:
    """CPU cores this process may run on: its affinity mask (``taskset``, cpusets), capped by a cgroup v2
    CPU quota (``docker --cpus``) when there is one; at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota visible: the affinity mask is the limit
    return max(1, cores)


def cpu_threads() -> int:
    """The thread count a lipsync CLI uses: ``$OMP_NUM_THREADS`` when the user set it, else
    :func:`usable_cores`.

    Raises:
        ValueError: ``OMP_NUM_THREADS`` is set but not a positive integer.
    """
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return usable_cores()
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{THREADS_ENV}={value!r}: expected a positive integer (unset it to use every usable core)")
    return int(value)


def configure_threads(threads: int | None = None) -> int:
    """Set the CPU thread count of this process and of the stages it starts; returns it.

    Why (issue 18, measured on 2 cores): torch's default is one OpenMP thread per *online* core, and
    libgomp lets a thread that reaches a barrier spin for a while. With one other CPU-bound process on
    the machine, one of two threads is descheduled and the other burns its core spinning for it, at
    every one of the thousands of small parallel regions a dubbing segment runs: 6 s per segment became
    60-83 s. Passive waiting (``OMP_WAIT_POLICY=PASSIVE``, set by ``lipsync/__init__.py`` before torch
    loads) hands the core over instead, and the count follows the cores this process may use.

    Sets ``torch.set_num_threads``, and ``OMP_NUM_THREADS`` (when unset) for subprocesses and worker
    processes, so a stage the demo starts uses the same count (the same count also gives the same
    floating-point reductions: results do not depend on machine load).

    Args:
        threads: an explicit count (a config's ``torch_threads``); None = :func:`cpu_threads`.
    """
    import torch  # here, not at module level: lipsync.cli is imported by light tools too

    n = int(threads) if threads else cpu_threads()
    os.environ.setdefault(THREADS_ENV, str(n))
    os.environ.setdefault(WAIT_POLICY_ENV, "PASSIVE")  # for subprocesses (this process set it on import)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def config_file(name: str) -> DictConfig:
    """One file of ``conf/`` as written (``"mask/adaptive"`` -> ``conf/mask/adaptive.yaml``), not composed:
    a plain load, so it works inside another Hydra app too."""
    path = config_dir() / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    cfg = OmegaConf.load(path)
    assert isinstance(cfg, DictConfig), f"{path} is not a mapping"
    return cfg


def per_device_batch(global_batch: int, devices: Any, num_nodes: int = 1, accumulate: int = 1) -> int:
    """Per-process batch that keeps the global batch (paper: 16) for any cluster shape."""
    if not isinstance(devices, int):
        raise ValueError(f"global_batch_size needs an integer trainer.devices, got {devices!r}")
    parts = devices * num_nodes * accumulate
    if global_batch % parts:
        raise ValueError(f"global batch {global_batch} is not divisible by devices {devices} x nodes "
                         f"{num_nodes} x accumulate_grad_batches {accumulate} = {parts}; change one of them")
    return global_batch // parts


def asset(name: str) -> str:
    """``${asset:NAME}``: a file unpacked by ``python -m lipsync.assets`` (``assets/NAME``)."""
    return str(DEFAULT_DIR / name)


def torch_hub(name: str) -> str:
    """``${torch_hub:NAME}``: a file of torchvision's weight cache (``<torch hub dir>/checkpoints/NAME``)."""
    import torch  # here, not at module level: lipsync.cli is imported by light tools too

    return str(Path(torch.hub.get_dir()) / "checkpoints" / name)


RESOLVERS: dict[str, Callable[..., Any]] = {
    "per_device_batch": per_device_batch, "asset": asset, "torch_hub": torch_hub}


def register_resolvers() -> None:
    """Every resolver ``conf/`` uses, the one place they are registered (:data:`RESOLVERS`:
    ``${per_device_batch:...}`` in the training config, ``${asset:...}`` and ``${torch_hub:...}`` in the
    evaluation, finetune and demo configs); idempotent. Each entry point calls it before composing
    (:func:`hydra_main`), as does a library function that resolves a config it did not compose
    (:func:`compose`, ``lipsync.infer.loading``); importing a module registers nothing."""
    for name, resolver in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def compose(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """``conf/<config_name>.yaml`` composed with Hydra ``overrides`` outside a Hydra app (the app, the
    summary, tests), its resolvers registered."""
    register_resolvers()
    with hydra.initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra.compose(config_name, overrides=list(overrides))


# ValueError covers MediaError and CheckpointError; HydraException covers a failed `instantiate`.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, HydraException,
                                                OmegaConfBaseException)


@contextmanager
def user_errors(prog: str, errors: tuple[type[BaseException], ...] = USER_ERRORS,
                debug: bool | None = None) -> Iterator[None]:
    """Turn ``errors`` raised inside into ``{prog}: error: <message>`` and exit status 1 (``debug``, by
    default ``HYDRA_FULL_ERROR=1``, lets them through with their traceback)."""
    try:
        yield
    except errors as err:
        if debug or (debug is None and os.environ.get(FULL_ERROR) == "1"):
            raise
        sys.exit(f"{prog}: error: {one_line(err)}")


def hydra_main(config_name: str, prog: str) -> Callable[[Callable[[DictConfig], Any]], Callable[..., Any]]:
    """``@hydra.main`` on ``conf/<config_name>.yaml`` (:func:`config_dir`) with :func:`user_errors`.

    A mistake Hydra finds before the task runs (an unknown key, a missing config group option) is one
    line too: Hydra is asked to raise it (``HYDRA_FULL_ERROR=1`` while it composes, the user's own
    setting restored before the task runs) instead of printing it over two lines.
    """

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[..., Any]:
        user_setting: dict[str, str | None] = {}

        def run_task(cfg: DictConfig) -> Any:
            _restore(user_setting["value"])  # the task and its subprocesses see the user's own setting
            terminal.show_own_logs(prog)  # after Hydra configured logging (it may have switched it off)
            with user_errors(prog):
                return task(cfg)

        app = hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")(run_task)

        @functools.wraps(task)
        def main(cfg: DictConfig | None = None) -> Any:
            """Parse the command line and run; given a composed ``cfg``, run on it (tests, notebooks)."""
            register_resolvers()
            if cfg is not None:
                with user_errors(prog):
                    return task(cfg)  # an embedding caller (test, notebook) keeps its own threads
            with user_errors(prog):
                configure_threads()
            terminal.configure()
            user_setting["value"] = os.environ.get(FULL_ERROR)
            os.environ[FULL_ERROR] = "1"
            try:
                with user_errors(prog, debug=user_setting["value"] == "1"):
                    return app()
            finally:
                _restore(user_setting["value"])

        return main

    return decorate


def _restore(value: str | None) -> None:
    if value is None:
        os.environ.pop(FULL_ERROR, None)
    else:
        os.environ[FULL_ERROR] = value


class ArgumentParser(argparse.ArgumentParser):
    """``argparse`` with the same convention: a bad argument is ``{prog}: error: ...`` and status 1
    (argparse's own is the usage block and status 2); ``--help`` is unchanged; parsing the command line
    sets the CPU threads (:func:`configure_threads`), as a Hydra entry point does before composing."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        with user_errors(self.prog):
            configure_threads()
        terminal.configure()  # no logging set up here: Python's last-resort handler shows lipsync's warnings
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        sys.exit(f"{self.prog}: error: {one_line(message)} (see --help)")
