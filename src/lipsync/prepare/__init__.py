"""Data curation (SPEC section 4): ``python -m lipsync.prepare input=DIR_OR_LIST output=DIR``.

Stage 1 (:mod:`lipsync.prepare.curate`) turns each input into staged segments and a record; stage 2
(:mod:`lipsync.prepare.run`) packs them into litdata shards and writes ``manifest.jsonl``.
``python -m lipsync.prepare.preview`` draws mask overlays for a person to check.
"""

from lipsync.prepare.curate import Curator, video_id
from lipsync.prepare.run import list_inputs, prepare, read_manifest

__all__ = ["Curator", "list_inputs", "prepare", "read_manifest", "video_id"]
