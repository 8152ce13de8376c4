"""The mp4 writer (issue 30): every frame size comes out as it went in, a lossless mode is bit-exact, and a
write that fails half-way (a full disk) leaves no file and one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np

from lipsync.media import read_frames, video_encoding, write_video

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def frames(height: int, width: int, count: int = 4) -> np.ndarray:
    """Smooth moving gradients with a little noise: what an encoder at crf 18 keeps within a few levels."""
    y, x = np.mgrid[:height, :width]
    rng = np.random.default_rng(0)
    out = [np.stack([(x + 3 * t) % 256, (y * 2 + t) % 256, (x + y) % 256], -1)
           + rng.integers(0, 8, (height, width, 3)) for t in range(count)]
    return np.clip(out, 0, 255).astype(np.uint8)


def pixel_format(path: Path) -> str:
    with av.open(str(path)) as c:
        return c.streams.video[0].codec_context.pix_fmt


def test_an_odd_frame_size_comes_out_exactly_as_it_went_in(tmp_path: Path) -> None:
    """257x191 was written as 258x192 (padded to 4:2:0's even sides); now 4:4:4 keeps it, and an even size
    keeps the 4:2:0 every player plays."""
    odd = frames(191, 257)
    back = read_frames(write_video(tmp_path / "odd.mp4", odd, 25))
    assert back.shape == (4, 191, 257, 3) and pixel_format(tmp_path / "odd.mp4") == "yuv444p"
    assert np.abs(back.astype(int) - odd).mean() < 3  # crf 18, nothing shifted or scaled
    for h, w in ((191, 256), (190, 257)):
        assert read_frames(write_video(tmp_path / f"{w}x{h}.mp4", frames(h, w), 25)).shape == (4, h, w, 3)
    write_video(tmp_path / "even.mp4", frames(190, 256), 25)
    assert pixel_format(tmp_path / "even.mp4") == "yuv420p"
    assert video_encoding(256, 190) == ("libx264", "yuv420p", {"crf": "18"})


def test_lossless_writes_every_pixel_back_bit_for_bit(tmp_path: Path) -> None:
    from lipsync.media import VideoWriter

    clip = frames(191, 257)
    with VideoWriter(tmp_path / "lossless.mp4", 25, 257, 191, crf=18, lossless=True) as out:
        for frame in clip:
            out.write(frame)
    np.testing.assert_array_equal(read_frames(tmp_path / "lossless.mp4"), clip)
    # the default is not: crf 18 and 4:2:0 chroma change pixels everywhere
    even = frames(190, 256)
    assert (read_frames(write_video(tmp_path / "crf18.mp4", even, 25)) != even).mean() > 0.5


FULL_DISK = """
import resource, sys
import numpy as np
from lipsync.media import MediaError, write_video
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # a disk that fills up after 20 kB
rng = np.random.default_rng(0)
try:
    write_video(sys.argv[1], (rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(50)), 25)
except MediaError as err:
    sys.exit(str(err))
"""


def test_a_write_that_fails_half_way_leaves_no_file_and_one_line(tmp_path: Path) -> None:
    target = tmp_path / "out" / "video.mp4"
    run = subprocess.run([sys.executable, "-c", FULL_DISK, str(target)], env=ENV, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.splitlines() == [f"{target}: could not write the video (File too large); nothing was "
                                       "written"]
    assert list(target.parent.iterdir()) == []  # neither the video nor its temporary file
