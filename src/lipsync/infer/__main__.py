"""``python -m lipsync.infer video=IN.mp4 audio=SPEECH.wav ckpt=... output=OUT.mp4`` (Hydra, conf/infer.yaml).

Bad input (a missing or non-media file, no video or no audio stream, an empty clip, an unreadable or
unsafe checkpoint) or a write that fails (a full disk) ends with one line on stderr and exit status 1:
no traceback, and no output file (the video is written under a temporary name and renamed only when
complete). On stderr too, one line each: the face dubbed in each shot and why, and lipsync's warnings;
MediaPipe's own log lines only with ``LIPSYNC_VERBOSE=1`` (:mod:`lipsync.terminal`). On stdout: the
written file.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logging: warnings and up only
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from omegaconf import DictConfig, OmegaConf  # noqa: E402

from lipsync.cli import hydra_main  # noqa: E402
from lipsync.media import MediaError, _open  # noqa: E402

REQUIRED = ("video", "audio", "ckpt", "output")


def check_inputs(cfg: DictConfig) -> None:
    """Fail fast, before any model is loaded, on arguments that cannot work."""
    missing = [k for k in REQUIRED if OmegaConf.is_missing(cfg, k) or cfg[k] in (None, "")]
    if missing:
        raise ValueError(
            f"missing {', '.join(f'{k}=' for k in missing)} (usage: python -m lipsync.infer "
            "video=IN.mp4 audio=SPEECH.wav ckpt=MODEL output=OUT.mp4)"
        )
    output = Path(cfg.output)
    if output.suffix.lower() != ".mp4":
        raise ValueError(f"output={cfg.output}: must end in .mp4")
    for key in ("video", "audio"):
        if output.resolve() == Path(cfg[key]).resolve():
            raise ValueError(f"output={cfg.output} would overwrite {key}=; choose another name")
    with _open(cfg.video) as c:
        if not c.streams.video:
            raise MediaError(f"{cfg.video}: has no video stream")
    with _open(cfg.audio) as c:
        if not c.streams.audio:
            raise MediaError(f"{cfg.audio}: has no audio stream (give a file with speech)")
    if not Path(cfg.ckpt).exists():
        raise FileNotFoundError(f"ckpt={cfg.ckpt}: no such file or folder")


def run(cfg: DictConfig) -> Path:
    """Load the pipeline ``cfg.ckpt`` and dub ``cfg.video`` with ``cfg.audio`` into ``cfg.output``."""
    check_inputs(cfg)  # before the slow imports: bad arguments fail in a second
    import torch
    from hydra.utils import instantiate

    from lipsync.infer.pipeline import LipSyncPipeline, options_from_mapping

    options = options_from_mapping(OmegaConf.to_container(cfg.options, resolve=True))
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    pipe = LipSyncPipeline.from_pretrained(
        cfg.ckpt,
        train_config=cfg.train_config,
        faces=instantiate(cfg.faces),
        generated_faces=instantiate(cfg.generated_faces) if cfg.generated_faces else None,
        device=device,
    )
    # the face dubbed in each shot, and why, is logged by the face choice: one line per shot on stderr
    result = pipe(cfg.video, cfg.audio, cfg.output, options)
    print(
        f"{result.output}  ({result.num_frames} frames at {float(result.fps):.3f} fps, "
        f"{result.seconds:.1f} s)"
    )
    return result.output


@hydra_main("infer", "lipsync-infer")
def main(cfg: DictConfig) -> None:
    """``python -m lipsync.infer`` and the console script ``lipsync-infer``."""
    run(cfg)


if __name__ == "__main__":
    main()
