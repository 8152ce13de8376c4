"""What several test modules share: the tiny random pipeline in the real save_pretrained format, a missing
Debian package failing loudly with its install command, and lipsync's loggers kept enabled."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import pytest
import torch

from lipsync.cli import register_resolvers
from lipsync.infer.pipeline import LipSyncPipeline
from lipsync.infer.presets import tiny_config
from lipsync.synth import speech


@pytest.fixture(scope="session")
def espeak() -> None:
    """espeak-ng (real synthetic speech): never a silent skip of a whole module when it is missing."""
    if not speech.espeak_available():
        pytest.fail("espeak-ng is not installed: run `make system-deps` (apt-get install espeak-ng)")


@pytest.fixture(scope="session", autouse=True)
def config_resolvers() -> None:
    """The resolvers every entry point registers (:func:`lipsync.cli.register_resolvers`): the tests
    compose and resolve ``conf/`` outside an entry point."""
    register_resolvers()


@pytest.fixture(autouse=True)
def lipsync_loggers_enabled() -> None:
    """Hydra's job logging (the CLIs run in-process by some tests) disables every logger that exists at
    that moment, for the rest of the process: re-enable lipsync's, so a later test's caplog sees them."""
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if name.startswith("lipsync") and isinstance(logger, logging.Logger):
            logger.disabled = False


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module (two spin against other jobs on a shared 2-core machine);
    use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def build_tiny_pipeline(seed: int | None = 0) -> LipSyncPipeline:
    """The tests' tiny random pipeline (``tiny_config`` at 32 px crops), seeded unless ``seed`` is None."""
    if seed is not None:
        torch.manual_seed(seed)
    return LipSyncPipeline.from_config(tiny_config(resolution=32), generated_faces=None)


@pytest.fixture(scope="session")
def tiny_pipeline() -> Callable[..., LipSyncPipeline]:
    """``tiny_pipeline(seed=0)``: a fresh tiny random pipeline (see :func:`build_tiny_pipeline`)."""
    return build_tiny_pipeline


@pytest.fixture(scope="session")
def save_tiny_pipeline() -> Callable[..., Path]:
    """``save_tiny_pipeline(folder, seed=0)``: the tiny random pipeline written with ``save_pretrained``."""
    return lambda folder, seed=0: build_tiny_pipeline(seed).save_pretrained(folder)
