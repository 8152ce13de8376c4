"""lipsync: audio-driven lip sync (SayAnything) in PyTorch Lightning + Hydra.

OpenMP reads its wait policy once, when torch loads it, and this file runs before any lipsync module
can import torch: so the passive policy of the CLI thread convention (:func:`lipsync.cli.configure_threads`,
which says why) is set here. A user's own ``OMP_WAIT_POLICY`` wins.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
