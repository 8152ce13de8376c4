"""syncnet_python's face detector (S3FD, Zhang et al. 2017) as a face backend, from a local weight file.

The network and its decoding are the ``syncnet-python`` package's (``detectors.s3fd``), called as its
pipeline calls them: RGB frame, ``conf_th=0.9``, one scale of 0.25; of the boxes found, the largest is
the frame's face. Only boxes come out (landmarks are NaN): evaluation needs boxes alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from lipsync.data.faces import MEDIAPIPE_478, Face, FaceBackend, FaceCallback, FaceTrack
from lipsync.models.weights import require_file


def load_s3fd(path: str | os.PathLike | None, device: str = "cpu", config_key: str = "s3fd.weights"):
    """syncnet_python's ``S3FD`` detector with the state dict at ``path`` (its ``sfd_face.pth``).

    Raises:
        MissingWeights: the file is absent (message names ``config_key``).
    """
    from syncnet_python.detectors.s3fd import S3FD
    from syncnet_python.detectors.s3fd.nets import S3FDNet

    path = require_file(path, config_key, "S3FD")
    net = S3FDNet(device=device)
    net.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    return S3FD(net=net.eval(), device=device)


class S3FDFaces(FaceBackend):
    """Largest S3FD face per frame, as syncnet_python's ``run_pipeline`` detects them.

    Args:
        weights: ``sfd_face.pth``.
        conf_th: detection score threshold (syncnet_python: 0.9).
        scale: the frame is resized by this before detection (syncnet_python's ``facedet_scale``: 0.25).
    """

    layout = MEDIAPIPE_478  # unused: landmarks are NaN

    def __init__(self, weights: str | os.PathLike | None, conf_th: float = 0.9, scale: float = 0.25,
                 device: str = "cpu") -> None:
        self.detector = load_s3fd(weights, device)
        self.conf_th, self.scale = conf_th, scale

    def detect_boxes(self, frame: np.ndarray) -> np.ndarray:
        """RGB uint8 (H, W, 3) -> (K, 4) boxes (x0, y0, x1, y1) above ``conf_th``, largest first."""
        found = np.asarray(self.detector.detect_faces(frame, conf_th=self.conf_th, scales=[self.scale]))
        if len(found) == 0:
            return np.zeros((0, 4), np.float32)
        areas = (found[:, 2] - found[:, 0]) * (found[:, 3] - found[:, 1])
        return found[np.argsort(-areas, kind="stable"), :4]

    def detect(self, frame: np.ndarray) -> np.ndarray | None:
        """RGB uint8 (H, W, 3) -> the largest box (x0, y0, x1, y1) above ``conf_th``, or None."""
        boxes = self.detect_boxes(frame)
        return boxes[0] if len(boxes) else None

    def detect_all(self, source: Path, frames: Iterable[tuple[int, np.ndarray]]) -> list[list[Face]]:
        """Every S3FD face of every frame (boxes only: S3FD gives no landmarks)."""
        no_landmarks = np.full((self.layout.num_points, 2), np.nan, np.float32)
        return [[Face(box, no_landmarks) for box in self.detect_boxes(frame)] for _, frame in frames]

    def track(self, source: Path, frames: Iterable[tuple[int, np.ndarray]],
              on_face: FaceCallback | None = None) -> FaceTrack:
        faces = []
        no_landmarks = np.full((self.layout.num_points, 2), np.nan, np.float32)
        for _, frame in frames:
            box = self.detect(frame)
            face = None if box is None else Face(box, no_landmarks)
            if on_face is not None:
                on_face(face)
            faces.append(face)
        return FaceTrack.from_faces(faces, self.layout, self.layout.num_points)
