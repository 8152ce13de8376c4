"""Source frames on demand, with bounded memory, for forward and backward (ping-pong) playback.

Inference reads the source twice: once in order to find the faces (:func:`scan`, which also records
every frame's presentation timestamp), then segment by segment to generate and paste. The second read
follows the output's index map, which runs backward after each ping-pong turn, so :class:`FrameSource`
keeps an LRU window of ``capacity`` decoded frames: forward requests continue the running decoder,
anything else seeks to the nearest keyframe before ``i - capacity + 1`` and decodes forward, so a
backward run finds the next ``capacity - 1`` frames already decoded. Frames are identified after a seek by
their timestamp in the scanned table, which holds for variable frame rates too.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Iterator

import av
import numpy as np

from lipsync.media import MediaError, _open


def scan(path: str | os.PathLike, stop: int | None = None) -> Iterator[tuple[int | None, np.ndarray]]:
    """Yield ``(pts, rgb uint8 (H, W, 3))`` of frames ``[0, stop)`` in decode order."""
    with _open(path) as container:
        if not container.streams.video:
            raise MediaError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        i = -1
        try:
            for i, frame in enumerate(container.decode(stream)):
                if stop is not None and i >= stop:
                    return
                yield frame.pts, frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as err:  # type: ignore[attr-defined]
            raise MediaError(
                f"{path}: video stream is corrupt at frame {i + 1} ({err.__class__.__name__})"
            ) from None


class FrameSource:
    """Random access to frames ``[0, len(pts))`` of a video through a small decoded window.

    Args:
        path: the video file.
        pts: (N,) presentation timestamps of frames 0..N-1 as :func:`scan` reported them (``-1`` where the
            container gave none; seeking then falls back to decoding from the start).
        capacity: decoded frames kept (the LRU window); at least a segment's worth.
    """

    def __init__(self, path: str | os.PathLike, pts: np.ndarray, capacity: int = 32) -> None:
        if capacity < 1:
            raise ValueError(f"frame cache capacity must be >= 1, got {capacity}")
        self.path = path
        self.pts = np.asarray(pts, dtype=np.int64)
        self.capacity = capacity
        self._seekable = bool(len(self.pts)) and (self.pts >= 0).all() and (np.diff(self.pts) > 0).all()
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._container: av.container.InputContainer | None = None
        self._frames: Iterator[av.VideoFrame] | None = None
        self._next = 0  # index of the frame the running decoder yields next
        self._pending: av.VideoFrame | None = None  # a frame read ahead (to identify a seek's landing)
        self.seeks = 0

    def __len__(self) -> int:
        return len(self.pts)

    def __getitem__(self, i: int) -> np.ndarray:
        """Frame ``i`` as RGB uint8 ``(H, W, 3)``."""
        if not 0 <= i < len(self):
            raise IndexError(f"frame {i} outside the {len(self)} scanned frames of {self.path}")
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        if self._frames is None or not self._next <= i < self._next + self.capacity:
            self._restart(max(0, i - self.capacity + 1))
        while self._next <= i:
            self._decode_next()
        return self._cache[i]

    def _restart(self, target: int) -> None:
        """Position the decoder so that the next frame it yields is ``target``."""
        self.seeks += 1
        if self._seekable and target > 0:
            self._open(seek_to=target)
            if self._next <= target:
                self._skip_to(target)
                return
        self._open(seek_to=None)  # no timestamps, or the seek overshot: decode from the start
        self._skip_to(target)

    def _open(self, seek_to: int | None) -> None:
        self.close()
        self._container = _open(self.path)
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        if seek_to is None:
            self._frames, self._next, self._pending = iter(self._container.decode(stream)), 0, None
            return
        self._container.seek(int(self.pts[seek_to]), stream=stream, backward=True, any_frame=False)
        self._frames = iter(self._container.decode(stream))
        first = self._read()
        # Identify the keyframe the seek landed on by its timestamp.
        self._next, self._pending = int(np.searchsorted(self.pts, first.pts)), first

    def _skip_to(self, target: int) -> None:
        while self._next < target:
            self._take()

    def _read(self) -> av.VideoFrame:
        assert self._frames is not None
        try:
            return next(self._frames)
        except StopIteration:
            raise MediaError(
                f"{self.path}: ended before frame {self._next} (the file changed since it was scanned)"
            ) from None
        except av.error.FFmpegError as err:  # type: ignore[attr-defined]
            raise MediaError(
                f"{self.path}: video stream is corrupt near frame {self._next} " f"({err.__class__.__name__})"
            ) from None

    def _take(self) -> av.VideoFrame:
        """The decoder's next frame (index ``self._next``), advancing it."""
        frame, self._pending = (self._pending, None) if self._pending is not None else (self._read(), None)
        self._next += 1
        return frame

    def _decode_next(self) -> None:
        index = self._next
        self._store(index, self._take())

    def _store(self, index: int, frame: av.VideoFrame) -> None:
        self._cache[index] = frame.to_ndarray(format="rgb24")
        self._cache.move_to_end(index)
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)

    def close(self) -> None:
        """Release the decoder (the cache stays)."""
        if self._container is not None:
            self._container.close()
        self._container, self._frames, self._pending = None, None, None

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
