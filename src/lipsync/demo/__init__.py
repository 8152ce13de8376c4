"""The built-in default (`make demo`): lip sync learned and *measured* on two CPU cores.

    python -m lipsync.demo [out=outputs/demo] [train_steps=1200] [ablations=false]

Stages (each skipped when its output already exists, so an interrupted demo resumes):

1. render the synthetic talking-face world (``lipsync.synth``): training identities and held-out ones;
2. curate the training videos into shards (``lipsync.prepare``, true landmarks as the face backend,
   real Whisper tiny.en features cached in the shards);
3. train the tiny SayAnything model (``python -m lipsync.train experiment=demo``) for a step budget
   (``train_steps``: the same model whatever the machine's load; killed, it resumes) in a background
   process on ``train_threads`` threads, while this process dubs and scores the shipped showcase model
   (``models/showcase``) on the held-out pairs on the core left free;
4. convert the last checkpoint into a pipeline folder (``outputs/demo/model``, what ``lipsync.infer
   ckpt=...`` takes) and dub every held-out identity A with another held-out clip's audio B;
5. measure on the pixels: *sync* = corr(measured mouth opening, the opening B's audio drives) and
   *leak* = corr(measured opening, A's original opening), and the self-reconstruction quality (SSIM,
   PSNR, FID) beside resolution ceilings; write report.json / report.md, a side-by-side video (source |
   shipped | own), the opening plot and mask overlays.

``ablations=true`` (``make bench-sync``) trains one-factor variants on the same corpus and budget and
writes one table (SPEC section 7's claims that can be checked here).

Modules, one concern each: :mod:`.training` (the corpus, shards, training subprocesses and the exported
model), :mod:`.dubbing` (dubbing the held-out pairs, sync and leak), :mod:`.results` (what the stages hand
on), :mod:`.pictures`, :mod:`.report` (report.json and report.md), :mod:`.run` (the stages in order) and
``__main__`` (the command). The quality scoring and the ceilings are :mod:`lipsync.evaluate.quality`'s.
"""

from lipsync.demo.dubbing import (Dub, PairScore, build_quality, driving_wav, dub, load_pipeline,
                                  own_audio_pairs, pairs, score, summarize)

__all__ = ["Dub", "PairScore", "build_quality", "driving_wav", "dub", "load_pipeline", "own_audio_pairs",
           "pairs", "score", "summarize"]
