"""What several test modules share: a missing Debian package fails loudly, with its install command."""

from __future__ import annotations

import pytest

from lipsync.synth import speech


@pytest.fixture(scope="session")
def espeak() -> None:
    """espeak-ng (real synthetic speech): never a silent skip of a whole module when it is missing."""
    if not speech.espeak_available():
        pytest.fail("espeak-ng is not installed: run `make system-deps` (apt-get install espeak-ng)")
