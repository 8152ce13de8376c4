"""Video and audio I/O through PyAV (FFmpeg's libraries; no ffmpeg binary needed).

Conventions used across lipsync:
- frames are ``uint8`` numpy arrays ``(H, W, 3)`` in RGB;
- audio is ``float32`` numpy ``(channels, samples)`` in [-1, 1] at its own sample rate, or mono
  ``(samples,)`` at 16 kHz where a function says so (the model's rate, SPEC section 2);
- every writer writes to a temporary name in the target folder and renames when complete, so a crash
  never leaves a partial file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

if TYPE_CHECKING:
    import av

MODEL_SAMPLE_RATE = 16_000
MODEL_FPS = 25


def _av() -> Any:
    """PyAV, imported on first use: training reads shards through this module's helpers without a codec."""
    import av

    return av


class MediaError(ValueError):
    """A media file is missing, unreadable, or lacks the stream asked for (message is one line)."""


@dataclass(frozen=True)
class VideoInfo:
    """What a container says about its first video stream (and whether it has audio)."""

    path: Path
    fps: Fraction
    width: int
    height: int
    num_frames: int  # decoded count when the container does not say
    duration_s: float
    has_audio: bool
    audio_rate: int | None
    audio_channels: int | None


def _open(path: str | os.PathLike) -> av.container.InputContainer:
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise MediaError(f"{p}: file is empty (0 bytes)")
    try:
        return _av().open(str(p))
    except (_av().error.FFmpegError, UnicodeDecodeError) as err:  # type: ignore[attr-defined]
        raise MediaError(f"{p}: not a readable media file ({err.__class__.__name__})") from None


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read stream metadata; counts frames by decoding only when the container does not store it."""
    with _open(path) as c:
        if not c.streams.video:
            raise MediaError(f"{path}: has no video stream")
        v = c.streams.video[0]
        fps = v.average_rate or v.guessed_rate or Fraction(MODEL_FPS)
        a = c.streams.audio[0] if c.streams.audio else None
        n = v.frames
        if not n:
            n = sum(1 for _ in c.decode(video=0))
        duration = float(n / fps)
        return VideoInfo(Path(path), Fraction(fps), v.codec_context.width, v.codec_context.height, n, duration,
                         a is not None, a.rate if a else None, a.codec_context.channels if a else None)


def iter_frames(path: str | os.PathLike, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames ``[start, stop)`` one at a time (memory stays flat for long videos)."""
    with _open(path) as c:
        if not c.streams.video:
            raise MediaError(f"{path}: has no video stream")
        c.streams.video[0].thread_type = "AUTO"
        try:
            for i, frame in enumerate(c.decode(video=0)):
                if stop is not None and i >= stop:
                    break
                if i >= start:
                    yield frame.to_ndarray(format="rgb24")
        except _av().error.FFmpegError as err:  # type: ignore[attr-defined]
            raise MediaError(f"{path}: video stream is corrupt at frame {i} ({err.__class__.__name__})") from None


def read_frames(path: str | os.PathLike, start: int = 0, stop: int | None = None) -> np.ndarray:
    """All frames in ``[start, stop)`` as ``(N, H, W, 3)`` uint8."""
    frames = list(iter_frames(path, start, stop))
    if not frames:
        raise MediaError(f"{path}: no video frames decoded")
    return np.stack(frames)


def read_audio(path: str | os.PathLike, sample_rate: int | None = MODEL_SAMPLE_RATE,
               mono: bool = True) -> tuple[np.ndarray, int]:
    """Decode the first audio stream as float32.

    Returns ``(samples,)`` when ``mono`` else ``(channels, samples)``, and the rate. ``sample_rate=None``
    keeps the stream's own rate (used to carry the driving audio unchanged).
    """
    with _open(path) as c:
        if not c.streams.audio:
            raise MediaError(f"{path}: has no audio stream")
        stream = c.streams.audio[0]
        rate = sample_rate or stream.rate
        layout = "mono" if mono else (stream.layout.name if stream.layout else "stereo")
        resampler = _av().AudioResampler(format="fltp", layout=layout, rate=rate)
        chunks = []
        try:
            for frame in c.decode(stream):
                chunks.extend(r.to_ndarray() for r in resampler.resample(frame))
        except _av().error.FFmpegError as err:  # type: ignore[attr-defined]
            raise MediaError(f"{path}: audio stream is corrupt ({err.__class__.__name__})") from None
        chunks.extend(r.to_ndarray() for r in resampler.resample(None))
    if not chunks:
        raise MediaError(f"{path}: audio stream holds no samples")
    audio = np.concatenate(chunks, axis=1).astype(np.float32)
    return (audio[0] if mono else audio), rate


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it to ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".partial{target.suffix}", dir=target.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a finished output gets the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def video_encoding(width: int, height: int, crf: int = 18, lossless: bool = False) -> tuple[str, str, dict]:
    """(codec, pixel format, quality options) :class:`VideoWriter` writes a ``width`` x ``height`` video
    with: H.264 4:2:0 at ``crf``; 4:4:4 when a side is odd (4:2:0 halves both sides); RGB at quantizer 0
    when ``lossless``."""
    if lossless:
        return "libx264rgb", "rgb24", {"qp": "0"}
    return "libx264", "yuv444p" if width % 2 or height % 2 else "yuv420p", {"crf": str(crf)}


class VideoWriter:
    """Incremental mp4 writer (H.264 + AAC), atomic: frames go in one at a time, audio at close.

    Use as a context manager; on an exception the partial file is removed and ``path`` is untouched.

    The frame size is kept exactly: 4:2:0 chroma (what every player plays) needs even sides, so a frame
    with an odd side is written with 4:4:4 chroma instead of being padded (a 257x191 video stays
    257x191). ``lossless=True`` writes H.264 in RGB at quantizer 0 (``libx264rgb``): every pixel decodes
    to exactly the RGB value written (``crf`` is then ignored); files are several times larger and not
    every player plays them.

    ``threads`` is x264's thread count, fixed rather than left to x264 (which takes it from the cores the
    process may use): x264's output depends on its thread count, so the same frames written on one core
    and on two gave different files, different decoded pixels, and sync scores 0.03 apart on the same dub.
    """

    ENCODER_THREADS = 4

    def __init__(self, path: str | os.PathLike, fps: Fraction | float, width: int, height: int,
                 crf: int = 18, audio: np.ndarray | None = None, audio_rate: int | None = None,
                 threads: int = ENCODER_THREADS, lossless: bool = False) -> None:
        self.path = Path(path)
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._c = _av().open(str(self._tmp), mode="w", format="mp4")
        fps = Fraction(fps).limit_denominator(1001 * 1000)
        codec, pix_fmt, quality = video_encoding(width, height, crf, lossless)
        self._v = self._c.add_stream(codec, rate=fps)
        self._v.width, self._v.height = width, height
        self._v.pix_fmt = pix_fmt
        self._v.options = {**quality, "preset": "veryfast", "threads": str(int(threads))}
        self._audio, self._audio_rate = audio, audio_rate
        # Every stream must exist before the first packet is muxed (the header fixes their time bases).
        self._a = None
        if audio is not None:
            if not audio_rate:
                raise ValueError("audio given without audio_rate; pass the audio's sample rate in Hz")
            layout = "mono" if np.atleast_2d(audio).shape[0] == 1 else "stereo"
            self._a = self._c.add_stream("aac", rate=audio_rate, layout=layout)
        self.frames_written = 0

    def write(self, frame: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame."""
        if frame.shape[:2] != (self._v.height, self._v.width):
            h, w = frame.shape[:2]
            raise ValueError(f"{self.path}: frame {self.frames_written} is {w}x{h}, the video "
                             f"{self._v.width}x{self._v.height}")
        with self._writing():
            image = _av().VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            for packet in self._v.encode(image):
                self._c.mux(packet)
        self.frames_written += 1

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A failed write (a full disk, a file-size limit) as a one-line :class:`MediaError` naming
        ``path``."""
        try:
            yield
        except (OSError, _av().error.FFmpegError) as err:  # type: ignore[attr-defined]
            why = err.strerror or type(err).__name__
            raise MediaError(f"{self.path}: could not write the video ({why}); nothing was written") from None

    def _write_audio(self) -> None:
        audio = np.atleast_2d(np.asarray(self._audio, dtype=np.float32))
        layout = "mono" if audio.shape[0] == 1 else "stereo"
        stream = self._a
        step = 1024
        for i in range(0, audio.shape[1], step):
            chunk = np.ascontiguousarray(audio[:, i:i + step])
            frame = _av().AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = self._audio_rate
            frame.pts = i
            for packet in stream.encode(frame):
                self._c.mux(packet)
        for packet in stream.encode(None):
            self._c.mux(packet)

    def close(self, ok: bool = True) -> None:
        """Finish the file and rename it to ``path`` (``ok``), or remove it; a write that fails on the way
        (the muxer writes most of the file here) removes it too and raises :class:`MediaError`."""
        try:
            if not ok:
                with contextlib.suppress(OSError, _av().error.FFmpegError):  # type: ignore[attr-defined]
                    self._c.close()  # aborting anyway: a second write error would hide the first
                return
            with self._writing():
                for packet in self._v.encode(None):
                    self._c.mux(packet)
                if self._audio is not None:
                    self._write_audio()
                self._c.close()
        except BaseException:
            ok = False
            with contextlib.suppress(OSError, _av().error.FFmpegError):  # type: ignore[attr-defined]
                self._c.close()
            raise
        finally:
            if ok:
                self._atomic.__exit__(None, None, None)
            else:
                self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: Fraction | float,
                audio: np.ndarray | None = None, audio_rate: int | None = None, crf: int = 18) -> Path:
    """Write frames (and optional float audio ``(samples,)`` or ``(channels, samples)``) atomically."""
    it = iter(frames)
    first = next(it)
    h, w = first.shape[:2]
    with VideoWriter(path, fps, w, h, crf=crf, audio=audio, audio_rate=audio_rate) as out:
        out.write(first)
        for frame in it:
            out.write(frame)
    return Path(path)


def as_written(frames: np.ndarray, fps: Fraction | float, crf: int = 18) -> np.ndarray:
    """Frames ``(N, H, W, 3)`` uint8 as a reader gets them back from the mp4 :class:`VideoWriter` makes of
    them (H.264, ``crf``, 4:2:0 chroma or 4:4:4 for odd sides): what anyone scoring a written video sees."""
    with tempfile.TemporaryDirectory(prefix="lipsync_as_written_") as folder:
        return read_frames(write_video(Path(folder) / "frames.mp4", frames, fps, crf=crf))


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> Path:
    """Write float audio ``(samples,)`` or ``(channels, samples)`` as 16-bit PCM WAV, atomically."""
    audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    layout = "mono" if pcm.shape[0] == 1 else "stereo"
    with atomic_path(path) as tmp, _av().open(str(tmp), mode="w", format="wav") as c:
        stream = c.add_stream("pcm_s16le", rate=sample_rate, layout=layout)
        frame = _av().AudioFrame.from_ndarray(pcm.T.reshape(1, -1).copy(), format="s16", layout=layout)
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            c.mux(packet)
        for packet in stream.encode(None):
            c.mux(packet)
    return Path(path)


def frame_levels_db(
    wave: np.ndarray, rate: int, fps: float, num_frames: int, window_s: float = 0.08
) -> np.ndarray:
    """RMS level in dBFS of the audio around each video frame, ``(num_frames,)``.

    Frame ``t`` is centred at ``(t + 0.5) / fps``; the window spans ``window_s`` seconds (beyond the end
    of the audio counts as silence).
    """
    wave = np.asarray(wave, dtype=np.float64).reshape(-1)
    power = np.concatenate([[0.0], np.cumsum(wave * wave)])  # prefix sums: O(1) per window
    centre = (np.arange(num_frames) + 0.5) / fps
    half = window_s / 2
    lo = np.clip(np.round((centre - half) * rate).astype(np.int64), 0, len(wave))
    hi = np.clip(np.round((centre + half) * rate).astype(np.int64), 0, len(wave))
    n = max(1, int(round(window_s * rate)))
    mean_power = (power[hi] - power[lo]) / n
    return 10.0 * np.log10(np.maximum(mean_power, 1e-12))
