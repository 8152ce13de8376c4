"""Mask overlays on real frames, written to a PNG grid so a person can check where the mask sits.

    python -m lipsync.prepare.preview VIDEO_OR_SHARDS out.png [--mask adaptive] [--frames 8]

Given a video it tracks the face as ``prepare`` does (mediapipe), crops at the training resolution and
draws the mask rectangle (green), the lip landmarks (red) and the lower-face landmarks (yellow).
Given a shard folder it draws the masks of stored segments exactly as the datamodule computes them.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lipsync.cli import ArgumentParser, config_dir, config_file, user_errors
from lipsync.data import shards
from lipsync.data.faces import FaceBackend, LandmarkLayout, MediaPipeFaces
from lipsync.data.masks import MaskSpec, fill_gaps
from lipsync.media import MediaError, atomic_path
from lipsync.prepare.crop import CropSpec
from lipsync.prepare.decode import resampled_frames


MIN_TILE = 128  # px: stored crops smaller than this are enlarged by a whole factor in the overlay


def load_mask(name: str) -> MaskSpec:
    """Instantiate ``conf/mask/<name>.yaml`` (a plain file load: works inside another Hydra app too), its
    ``defaults`` (other files of the group, e.g. ``steady`` on ``adaptive``) merged under it."""
    path = config_dir() / "mask" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"no mask variant '{name}': choose one of "
                         f"{sorted(p.stem for p in path.parent.glob('*.yaml'))}")
    return instantiate(_mask_config(name))


def _mask_config(name: str) -> DictConfig:
    cfg = config_file(f"mask/{name}")
    bases = [str(d) for d in cfg.pop("defaults", []) if str(d) != "_self_"]
    return OmegaConf.merge(*(_mask_config(b) for b in bases), cfg) if bases else cfg


def draw(frame: np.ndarray, box: np.ndarray, landmarks: np.ndarray, layout: LandmarkLayout) -> np.ndarray:
    """Overlay one mask rectangle (shaded, green outline) and the landmarks it was made from."""
    out = frame.copy()
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    shade = out.copy()
    cv2.rectangle(shade, (x0, y0), (x1 - 1, y1 - 1), (0, 255, 0), -1)
    out = cv2.addWeighted(shade, 0.25, out, 0.75, 0)
    cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), (0, 255, 0), 1)
    for idx, color in ((layout.lower_face_idx, (255, 255, 0)), (layout.mouth_idx, (255, 0, 0))):
        for x, y in landmarks[idx]:
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(out, (int(round(x)), int(round(y))), 1, color, -1)
    return out


def grid(tiles: list[np.ndarray], columns: int = 4) -> np.ndarray:
    """Tile equally sized RGB images row by row (blank tiles fill the last row)."""
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    blank = np.zeros_like(tiles[0])
    tiles = tiles + [blank] * (rows * columns - len(tiles))
    return np.concatenate([np.concatenate(tiles[r * columns:(r + 1) * columns], axis=1) for r in range(rows)])


def video_tiles(video: Path, mask: MaskSpec, num: int, crop: CropSpec, faces: FaceBackend) -> list[np.ndarray]:
    """Track, crop and overlay ``num`` evenly spaced frames of a video."""
    frames = [(i, f) for i, _, f in resampled_frames(video)]
    track = faces.track(video, frames)
    if not track.found.any():
        raise MediaError(f"{video}: no face found to preview")
    boxes, _ = fill_gaps(track.boxes, len(track))
    landmarks, _ = fill_gaps(track.landmarks, len(track))
    squares = crop.boxes(boxes)
    crop_landmarks = crop.to_crop(landmarks, squares)
    size = crop.resolution
    mask_boxes = mask.boxes(crop_landmarks, track.layout, size, size)
    rows = np.linspace(0, len(frames) - 1, num).round().astype(int)
    return [draw(crop.crop(frames[r][1], squares[r]), mask_boxes[r], crop_landmarks[r], track.layout) for r in rows]


def shard_tiles(folder: Path, mask: MaskSpec, num: int) -> list[np.ndarray]:
    """Overlay the first frame of up to ``num`` stored segments, masks computed as at load time."""
    from litdata import StreamingDataset

    dataset = StreamingDataset(str(folder))
    tiles = []
    for i in np.linspace(0, len(dataset) - 1, min(num, len(dataset))).round().astype(int):
        item = dataset[int(i)]
        layout = shards.layout_of(item)
        frames = shards.decode_jpegs(item["frames"], item["frame_offsets"], [0])
        size = frames.shape[1]
        box = mask.boxes(np.asarray(item["landmarks"]), layout, size, size)[0]
        k = max(1, MIN_TILE // size)  # small training crops (48 px) are drawn enlarged, nearest-neighbour
        big = cv2.resize(frames[0], (size * k, size * k), interpolation=cv2.INTER_NEAREST)
        tiles.append(draw(big, box * k, np.asarray(item["landmarks"])[0] * k, layout))
    return tiles


def write_png(path: Path, image: np.ndarray) -> Path:
    """Write an RGB image as PNG, atomically."""
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), image[:, :, ::-1]):  # tmp keeps the .png suffix cv2 needs
            raise ValueError(f"could not write {path} (is its suffix an image format?)")
    return path


def preview(source: str | Path, out: str | Path, mask: str = "adaptive", frames: int = 8,
            resolution: int = 160) -> Path:
    """Write the overlay grid of ``source`` (a video file or a shard folder) to ``out``."""
    source, spec = Path(source), load_mask(mask)
    if source.is_dir():
        tiles = shard_tiles(source, spec, frames)
    else:
        tiles = video_tiles(source, spec, frames, CropSpec(resolution=resolution), MediaPipeFaces())
    return write_png(Path(out), grid(tiles))


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="lipsync-preview", description=__doc__.split("\n")[0])
    parser.add_argument("source", help="a video file, or a shard folder written by lipsync.prepare")
    parser.add_argument("out", help="PNG to write")
    parser.add_argument("--mask", default="adaptive", help="conf/mask/<name>.yaml (adaptive, unsmoothed, lips, fixed)")
    parser.add_argument("--frames", type=int, default=8, help="number of tiles")
    parser.add_argument("--resolution", type=int, default=160, help="crop size of each tile (video input)")
    args = parser.parse_args(argv)
    with user_errors("lipsync-preview"):
        print(preview(args.source, args.out, args.mask, args.frames, args.resolution))


if __name__ == "__main__":
    main()
