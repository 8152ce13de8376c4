"""A corpus of synthetic talking-face videos: mp4 (H.264 + AAC) with their truth beside each.

For ``DIR/synth_00007.mp4`` the renderer also writes

- ``synth_00007.mp4.landmarks.npz``: the landmarks-file format of :mod:`lipsync.data.faces`
  (``landmarks`` (N, 70, 2) in iBUG 68 order plus left/right cheek, ``boxes`` (N, 4), ``kind`` "ibug68"),
  plus ``opening`` (N,) the true mouth opening and ``blink`` (N,) the eyelid closure;
- ``synth_00007.mp4.json``: identity parameters, voice, sentences, seed.

The mp4 is written last, so a video whose mp4 exists is complete (and a `prepare` run that lists the
mp4 finds its landmarks). Each video is a pure function of ``(seed, index)``; runs skip finished ones.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lipsync.media import MODEL_FPS, MODEL_SAMPLE_RATE, atomic_path, write_video
from lipsync.synth.render import Identity, RenderedVideo, render_video, sample_identity, sample_motion
from lipsync.synth.speech import SpeechClip, Voice, mouth_opening_from_audio, sample_voice, speech_clip

LANDMARK_KIND = "ibug68"  # points 68, 69 (cheeks) follow the 68; the faces module reads only what it indexes


@dataclass(frozen=True)
class SynthSample:
    """One rendered video with its audio and everything that made it."""

    index: int
    identity_id: int
    identity: Identity
    speech: SpeechClip
    video: RenderedVideo


def video_name(index: int) -> str:
    """File name of video ``index`` in a corpus folder."""
    return f"synth_{index:05d}.mp4"


def person(seed: int, identity_id: int) -> tuple[Identity, Voice]:
    """The look and the voice of one identity (the same in every video of that identity)."""
    rng = np.random.default_rng([seed, 0, identity_id])
    return sample_identity(rng), sample_voice(rng)


def synth_sample(seed: int, index: int, seconds: float, size: int = 128, videos_per_identity: int = 1
                 ) -> SynthSample:
    """Render video ``index`` of the corpus drawn from ``seed`` (deterministic).

    Args:
        seed: corpus seed.
        index: video number; identity ``index // videos_per_identity`` speaks in it.
        seconds: length; frames = round(seconds * 25).
        size: frame side in pixels.
        videos_per_identity: how many consecutive videos share one person (look and voice).
    """
    if videos_per_identity < 1:
        raise ValueError(f"videos_per_identity={videos_per_identity} must be >= 1")
    identity_id = index // videos_per_identity
    ident, voice = person(seed, identity_id)
    rng = np.random.default_rng([seed, 1, index])
    clip = speech_clip(seconds, rng, voice)
    num_frames = int(round(seconds * MODEL_FPS))
    opening = mouth_opening_from_audio(clip.wave, num_frames)
    video = render_video(ident, sample_motion(rng, num_frames, MODEL_FPS), opening, size=size)
    return SynthSample(index, identity_id, ident, clip, video)


def redubbed_truth(video: str | os.PathLike, driving_wave: np.ndarray) -> RenderedVideo:
    """Corpus video A as it would look had its person said ``driving_wave`` (16 kHz mono) instead.

    A's identity, head motion and blinks (the renderer's draws replayed from A's seed and index), with
    the mouth opening the driving speech asks for: the ground truth a cross-driven dub of A is compared
    with. Driven by A's own audio it redraws A exactly.
    """
    meta = json.loads(Path(f"{video}.json").read_text())
    n, seed, index = int(meta["num_frames"]), int(meta["seed"]), int(meta["index"])
    ident, voice = person(seed, int(meta["identity_id"]))
    rng = np.random.default_rng([seed, 1, index])
    speech_clip(n / MODEL_FPS, rng, voice)  # advances rng exactly as synth_sample did before the motion
    motion = sample_motion(rng, n, MODEL_FPS)
    return render_video(ident, motion, mouth_opening_from_audio(driving_wave, n), size=int(meta["size"]))


def write_sample(sample: SynthSample, folder: str | os.PathLike, seed: int, crf: int = 15) -> Path:
    """Write the truth files, then the mp4 (each atomically); returns the mp4 path."""
    path = Path(folder) / video_name(sample.index)
    v = sample.video
    with atomic_path(f"{path}.landmarks.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, landmarks=v.landmarks, boxes=v.boxes, kind=np.array(LANDMARK_KIND), opening=v.opening,
                 blink=v.blink)
    meta = {"index": sample.index, "seed": seed, "identity_id": sample.identity_id, "fps": MODEL_FPS,
            "num_frames": len(v.frames), "size": v.frames.shape[1], "identity": sample.identity.to_dict(),
            "voice": asdict(sample.speech.voice), "sentences": list(sample.speech.sentences),
            "onsets_s": list(sample.speech.onsets_s),
            "landmarks": "iBUG 68 order, then 68 = left cheek, 69 = right cheek (image left/right)"}
    with atomic_path(f"{path}.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=1))
    write_video(path, v.frames, MODEL_FPS, audio=sample.speech.wave, audio_rate=MODEL_SAMPLE_RATE, crf=crf)
    return path


@dataclass(frozen=True)
class Truth:
    """What a corpus video was rendered with (read back from its landmarks file)."""

    opening: np.ndarray  # (N,) float32 in [0, 1]
    boxes: np.ndarray  # (N, 4) float32 x0, y0, x1, y1
    landmarks: np.ndarray  # (N, 70, 2) float32


def load_truth(video: str | os.PathLike) -> Truth:
    """The true opening, boxes and landmarks stored beside a corpus video."""
    path = Path(f"{video}.landmarks.npz")
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; render the corpus with "
                                "`python -m lipsync.synth output=DIR`")
    with np.load(path, allow_pickle=False) as data:
        if "opening" not in data:
            raise ValueError(f"{path}: has no 'opening' (not written by lipsync.synth)")
        return Truth(data["opening"], data["boxes"], data["landmarks"])


def _finished(folder: Path, index: int) -> bool:
    path = folder / video_name(index)
    return all(Path(p).exists() for p in (path, f"{path}.landmarks.npz", f"{path}.json"))


def _render_one(args: tuple[str, int, int, float, int, int, int]) -> int:
    folder, seed, index, seconds, size, per_identity, crf = args
    write_sample(synth_sample(seed, index, seconds, size, per_identity), folder, seed, crf)
    return index


def _remove_partials(folder: Path) -> None:
    """Temporary files of an interrupted run (atomic writes never leave them under final names)."""
    for stale in folder.glob(".synth_*.partial*"):
        stale.unlink(missing_ok=True)


def render_corpus(output: str | os.PathLike, num_videos: int, seconds: float, size: int = 128, seed: int = 0,
                  workers: int = 2, videos_per_identity: int = 1, crf: int = 15,
                  progress: bool = True) -> dict:
    """Render videos ``0 .. num_videos - 1`` into ``output``, skipping finished ones, in parallel.

    Returns:
        Summary: counts rendered / skipped and the output folder; ``output/index.json`` lists the corpus.
    """
    if num_videos < 1 or seconds <= 0 or size < 16:
        raise ValueError(f"need num_videos >= 1, seconds > 0, size >= 16; "
                         f"got {num_videos}, {seconds}, {size}")
    folder = Path(output).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    _remove_partials(folder)
    todo = [i for i in range(num_videos) if not _finished(folder, i)]
    jobs = [(str(folder), seed, i, seconds, size, videos_per_identity, crf) for i in todo]
    bar = tqdm(total=len(jobs), desc="rendering", unit="video", disable=not progress)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for future in as_completed([pool.submit(_render_one, job) for job in jobs]):
                future.result()
                bar.update()
    else:
        for job in jobs:
            _render_one(job)
            bar.update()
    bar.close()
    index = [{"video": video_name(i), "identity_id": i // videos_per_identity} for i in range(num_videos)]
    with atomic_path(folder / "index.json") as tmp:
        summary = {"seed": seed, "seconds": seconds, "size": size, "videos": index}
        tmp.write_text(json.dumps(summary, indent=1))
    return {"output": str(folder), "rendered": len(todo), "skipped": num_videos - len(todo)}
