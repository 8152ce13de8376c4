"""The synthetic talking-face world (SPEC section 9): speech, renderer, corpus, and lip-sync measurement.

- :mod:`lipsync.synth.speech`: espeak-ng speech clips and ``mouth_opening_from_audio`` (the truth).
- :mod:`lipsync.synth.render`: identities, head motion, and frames drawn with OpenCV.
- :mod:`lipsync.synth.corpus`: ``python -m lipsync.synth`` writes mp4 + landmarks + json per video.
- :mod:`lipsync.synth.measure`: mouth opening from pixels, ``sync_score``, ``leak_score``, plots.
- :mod:`lipsync.synth.scenes`: two or three people per frame, a known speaker per shot, a cut (the
  speaker-choice accuracy of ``options.face=speaker`` is measured on them by
  :mod:`lipsync.evaluate.scenes`).
"""

from lipsync.synth.corpus import Truth, load_truth, render_corpus, synth_sample, write_sample
from lipsync.synth.measure import leak_score, measure_opening, plot_openings, sync_score
from lipsync.synth.render import (Identity, Motion, Pose, render_frame, render_video, sample_identity,
                                  sample_motion)
from lipsync.synth.speech import mouth_opening_from_audio, speech_clip, synthesize

__all__ = [
    "Identity", "Motion", "Pose", "Truth", "leak_score", "load_truth", "measure_opening",
    "mouth_opening_from_audio", "plot_openings", "render_corpus", "render_frame", "render_video",
    "sample_identity", "sample_motion",
    "speech_clip", "sync_score", "synth_sample", "synthesize", "write_sample",
]
