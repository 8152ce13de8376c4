"""What several test modules share: a missing Debian package fails loudly, with its install command."""

from __future__ import annotations

import logging

import pytest

from lipsync.synth import speech


@pytest.fixture(scope="session")
def espeak() -> None:
    """espeak-ng (real synthetic speech): never a silent skip of a whole module when it is missing."""
    if not speech.espeak_available():
        pytest.fail("espeak-ng is not installed: run `make system-deps` (apt-get install espeak-ng)")


@pytest.fixture(autouse=True)
def lipsync_loggers_enabled() -> None:
    """Hydra's job logging (the CLIs run in-process by some tests) disables every logger that exists at
    that moment, for the rest of the process: re-enable lipsync's, so a later test's caplog sees them."""
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if name.startswith("lipsync") and isinstance(logger, logging.Logger):
            logger.disabled = False
