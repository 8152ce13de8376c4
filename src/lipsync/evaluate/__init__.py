"""Evaluation (SPEC section 7): FID, FVD, SSIM, PSNR, LPIPS, Sync-C/Sync-D on self-reconstructions.

    python -m lipsync.evaluate generated=DIR reference=DIR      # metrics.json + table1.md
    python -m lipsync.evaluate.report sweep=DIR                 # table3.md over a sweep's runs
    python -m lipsync.evaluate.make_lists DATA_DIR              # the seeded 30-video test lists

Protocol: a preset of ``conf/evaluate/`` (``evaluate=paper`` by default; ``stylegan_v``, ``latentsync``,
``syncnet_python``), every choice and assumption written into metrics.json under "protocol" and under the
tables. The ``paper`` preset:

| metric     | region (boxes tracked on the reference)   | pixels          | network / reference code        |
|------------|-------------------------------------------|-----------------|---------------------------------|
| FID        | face crop 1.5x the box, every frame       | 256 -> 299 TF1  | TF-FID InceptionV3, 2048-d      |
| FVD        | same crop, 16-frame clips every 8 frames  | 256 -> 224      | Kinetics-400 I3D, 400-d         |
| SSIM, PSNR | same crop; mean over frames, then videos  | 256             | scikit-image Gaussian SSIM      |
| LPIPS      | same crop                                 | 256             | AlexNet + LPIPS v0.1 linear     |
| Sync-C/D   | syncnet_python's crop (box x1.4, low)     | 224, 25 fps     | SyncNet v2, offsets +-15        |

Each mean carries a bootstrap interval over videos (:mod:`lipsync.evaluate.frechet`).

Beside the protocols: :mod:`.reconstruction` and :mod:`.quality` (self-reconstruction quality inside the edit
mask at frame resolution, and the resolution ceilings it is read against: the demo's quality columns), and
:mod:`.side_by_side` (the source | result video the app and the demo write).
"""

from lipsync.evaluate.report import table1, table3
from lipsync.evaluate.score import Scorers, build_scorers, match_pairs, score_dataset
from lipsync.models.weights import MissingWeights

__all__ = ["MissingWeights", "Scorers", "build_scorers", "match_pairs", "score_dataset", "table1", "table3"]
