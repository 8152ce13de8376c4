"""What every ``python -m lipsync.*`` entry point shares: where ``conf/`` is, the config resolvers, and
that a user's mistake (a bad path, override, input file or config) is one line on stderr and exit
status 1, never a traceback.

    @hydra_main("train", "lipsync-train")       # Hydra entry points: conf/train.yaml
    def main(cfg: DictConfig) -> None: ...

    parser = ArgumentParser(prog="lipsync-curves")   # argparse entry points
    with user_errors("lipsync-curves"):
        run(parser.parse_args(argv))

``HYDRA_FULL_ERROR=1`` (Hydra's own switch) lets the exception through with its traceback, for debugging.
The config directory is found in this order: ``$LIPSYNC_CONF``, ``conf/`` inside the installed package,
``conf/`` at the root of a source checkout (:func:`config_dir`).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

CONF_ENV = "LIPSYNC_CONF"
FULL_ERROR = "HYDRA_FULL_ERROR"


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


def register_resolvers() -> None:
    """The resolvers ``conf/`` uses (``${per_device_batch:...}`` in the training config); idempotent."""
    if not OmegaConf.has_resolver("per_device_batch"):
        OmegaConf.register_new_resolver("per_device_batch", per_device_batch)


register_resolvers()

# ValueError covers MediaError and CheckpointError; HydraException covers a failed `instantiate`.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, HydraException,
                                                OmegaConfBaseException)


def one_line(err: BaseException) -> str:
    """The exception's message with every run of whitespace, newlines included, made one space."""
    return " ".join(str(err).split())


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
            with user_errors(prog):
                return task(cfg)

        app = hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")(run_task)

        @functools.wraps(task)
        def main(cfg: DictConfig | None = None) -> Any:
            """Parse the command line and run; given a composed ``cfg``, run on it (tests, notebooks)."""
            if cfg is not None:
                with user_errors(prog):
                    return task(cfg)
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
    (argparse's own is the usage block and status 2); ``--help`` is unchanged."""

    def error(self, message: str) -> NoReturn:
        sys.exit(f"{self.prog}: error: {one_line(message)} (see --help)")
