"""2-D talking faces drawn with OpenCV: identities, head motion, blinks, and an audio-driven mouth.

Geometry lives in *face units*: origin at the face centre (between the cheeks, just below the eyes),
u to the right, v down, the forehead top at v = -1. A similarity transform (the head pose) maps face
units to pixels. Each frame is drawn at ``supersample`` times the output size with anti-aliased
polygons and shrunk with area averaging, so edges are smooth at any size.

Lower-face cues deliberately move with the mouth (SPEC section 9): the chin and jaw drop as the mouth
opens, the cheeks and the folds from nose to mouth corners follow, and the corners pull in. These are
what lets a model "cheat" by copying the visible lower face (the paper's motion leakage, section 3.2).

The mouth interior is a fixed, very dark wine colour (:data:`MOUTH_INTERIOR`) and the teeth a fixed
white (:data:`TEETH`); skin and lips are kept clearly brighter, so :mod:`lipsync.synth.measure` can
read the opening back from pixels.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from lipsync.media import MODEL_FPS

# Colours the measurement relies on (RGB): skin is never as dark as the interior (luma >= SKIN_MIN_LUMA)
# and never as grey as the teeth (R - B >= SKIN_MIN_CHROMA).
MOUTH_INTERIOR = (48.0, 10.0, 26.0)
TEETH = (246.0, 244.0, 236.0)
SKIN_MIN_LUMA = 85.0
SKIN_MIN_CHROMA = 65.0

SKIN_TONES = ((250, 214, 182), (241, 194, 164), (228, 178, 140), (210, 158, 118), (190, 135, 95),
              (164, 108, 72), (140, 92, 62), (124, 82, 54))
HAIR_COLOURS = ((28, 24, 22), (60, 40, 28), (104, 70, 42), (150, 96, 48), (196, 160, 96), (168, 64, 32),
                (150, 150, 150), (60, 70, 140), (150, 60, 120))
IRIS_COLOURS = ((70, 45, 25), (40, 90, 150), (60, 110, 70), (100, 80, 50), (40, 40, 40))
HAIR_STYLES = ("short", "long", "bob", "buzz", "curly", "bald")

Colour = tuple[float, float, float] | np.ndarray  # RGB 0-255
Coverage = tuple[np.ndarray, tuple[int, int, int, int]]  # (h, w) weights in [0, 1] and their x0, y0, x1, y1

# iBUG 68-point order (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, lips 48-67), then two cheek points.
NUM_LANDMARKS = 70
LEFT_CHEEK, RIGHT_CHEEK = 68, 69


@dataclass(frozen=True)
class Identity:
    """Everything that makes one synthetic person look like themselves (face units unless noted).

    Colours are RGB 0-255. ``face_scale`` is pixels per face unit as a fraction of the frame size.
    """

    skin: tuple[float, float, float]
    lip: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    shirt: tuple[float, float, float]
    bg_a: tuple[float, float, float]
    bg_b: tuple[float, float, float]
    background: str
    bg_freq: float
    bg_angle: float
    hair_style: str
    face_scale: float
    face_w: float
    chin: float
    jaw_square: float
    eye_y: float
    eye_sep: float
    eye_w: float
    eye_h: float
    brow_gap: float
    brow_thick: float
    brow_tilt: float
    nose_y: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_upper: float
    lip_lower: float
    max_open: float
    jaw_follow: float
    teeth: float

    def to_dict(self) -> dict:
        """JSON-ready parameters (for the sidecar file)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, params: dict) -> "Identity":
        """Inverse of :meth:`to_dict` (JSON turns the colour tuples into lists)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})


def _jitter(rng: np.random.Generator, colour: tuple[int, ...], amount: float) -> tuple[float, float, float]:
    c = np.clip(np.asarray(colour, float) + rng.normal(0.0, amount, 3), 0, 255)
    return (float(c[0]), float(c[1]), float(c[2]))


def _luma(colour: tuple[float, ...] | np.ndarray) -> float:
    r, g, b = colour
    return 0.299 * r + 0.587 * g + 0.114 * b


def _skin(rng: np.random.Generator) -> tuple[float, float, float]:
    """A skin tone, brighter than SKIN_MIN_LUMA and never grey (so it is never mistaken for teeth)."""
    while True:
        skin = _jitter(rng, SKIN_TONES[rng.integers(len(SKIN_TONES))], 6.0)
        if _luma(skin) >= SKIN_MIN_LUMA and skin[0] - skin[2] >= SKIN_MIN_CHROMA:
            return skin


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw a person: colours, hair, face shape and feature placement, background."""
    skin = _skin(rng)
    tint = np.array([200.0, 80.0, 90.0]) if rng.random() < 0.6 else np.array([160.0, 70.0, 60.0])
    lip = tuple(float(x) for x in 0.55 * np.asarray(skin) + 0.45 * tint)
    return Identity(
        skin=skin, lip=lip,  # type: ignore[arg-type]
        hair=_jitter(rng, HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))], 8.0),
        iris=_jitter(rng, IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))], 8.0),
        shirt=tuple(float(x) for x in rng.uniform(30, 230, 3)),  # type: ignore[arg-type]
        bg_a=tuple(float(x) for x in rng.uniform(20, 235, 3)),  # type: ignore[arg-type]
        bg_b=tuple(float(x) for x in rng.uniform(20, 235, 3)),  # type: ignore[arg-type]
        background=str(rng.choice(sorted(PATTERNS))), bg_freq=float(rng.uniform(3, 9)),
        bg_angle=float(rng.uniform(0, np.pi)), hair_style=str(rng.choice(HAIR_STYLES)),
        face_scale=float(rng.uniform(0.25, 0.29)), face_w=float(rng.uniform(0.76, 0.92)),
        chin=float(rng.uniform(0.98, 1.12)), jaw_square=float(rng.uniform(2.0, 3.2)),
        eye_y=float(rng.uniform(-0.2, -0.1)), eye_sep=float(rng.uniform(0.32, 0.42)),
        eye_w=float(rng.uniform(0.13, 0.17)), eye_h=float(rng.uniform(0.065, 0.085)),
        brow_gap=float(rng.uniform(0.13, 0.19)), brow_thick=float(rng.uniform(0.035, 0.06)),
        brow_tilt=float(rng.uniform(-0.05, 0.06)), nose_y=float(rng.uniform(0.24, 0.32)),
        nose_w=float(rng.uniform(0.09, 0.13)), mouth_y=float(rng.uniform(0.55, 0.62)),
        mouth_w=float(rng.uniform(0.27, 0.35)), lip_upper=float(rng.uniform(0.05, 0.075)),
        lip_lower=float(rng.uniform(0.065, 0.095)), max_open=float(rng.uniform(0.30, 0.38)),
        jaw_follow=float(rng.uniform(0.85, 1.0)), teeth=float(rng.uniform(0.055, 0.075)),
    )


@dataclass(frozen=True)
class Motion:
    """Per-frame head pose and eyelid closure for one video.

    Attributes:
        tx, ty: (T,) head translation as a fraction of the frame size.
        angle: (T,) in-plane rotation in radians.
        scale: (T,) multiplicative head size.
        blink: (T,) eyelid closure in [0, 1].
    """

    tx: np.ndarray
    ty: np.ndarray
    angle: np.ndarray
    scale: np.ndarray
    blink: np.ndarray


def _smooth_track(rng: np.random.Generator, num_frames: int, fps: float, amplitude: float) -> np.ndarray:
    """Sum of three slow sinusoids (0.05-0.5 Hz), peak about ``amplitude``: smooth, never repeating."""
    t = np.arange(num_frames) / fps
    freqs, phases, weights = rng.uniform(0.05, 0.5, 3), rng.uniform(0, 2 * np.pi, 3), rng.uniform(0.3, 1.0, 3)
    track = sum(w * np.sin(2 * np.pi * f * t + p) for f, p, w in zip(freqs, phases, weights))
    return amplitude * track / weights.sum()


def _blinks(rng: np.random.Generator, num_frames: int, fps: float) -> np.ndarray:
    """Eyelid closure: blinks about every 2-5 s, each a 5-frame close-open profile."""
    profile = np.array([0.45, 1.0, 1.0, 0.6, 0.2])
    closure = np.zeros(num_frames)
    start = rng.uniform(0.3, 2.5) * fps
    while start < num_frames:
        s = int(start)
        n = min(len(profile), num_frames - s)
        closure[s:s + n] = np.maximum(closure[s:s + n], profile[:n])
        start += rng.uniform(2.0, 5.0) * fps
    return closure


def sample_motion(rng: np.random.Generator, num_frames: int, fps: float = MODEL_FPS) -> Motion:
    """Smooth head motion (+-4% shift, +-5 degrees, +-4% scale) and blinks for ``num_frames`` frames."""
    return Motion(tx=_smooth_track(rng, num_frames, fps, 0.04), ty=_smooth_track(rng, num_frames, fps, 0.03),
                  angle=_smooth_track(rng, num_frames, fps, np.deg2rad(5.0)),
                  scale=1.0 + _smooth_track(rng, num_frames, fps, 0.04), blink=_blinks(rng, num_frames, fps))


# --- geometry in face units -------------------------------------------------------------------------


def _lip_curves(ident: Identity, opening: float, n: int = 15) -> dict[str, np.ndarray]:
    """Inner and outer lip contours, each (n, 2) from the left corner to the right corner.

    The lower lip follows the jaw (80% of the opening), the upper lip lifts 20%, the corners drop a
    little and pull in (the mouth narrows as it opens).
    """
    h = ident.max_open * opening
    half = ident.mouth_w * (1.0 - 0.15 * opening)
    corner_y = ident.mouth_y + 0.15 * h
    s = np.linspace(-1.0, 1.0, n)
    bulge = np.sqrt(1.0 - s ** 2)
    upper_in = corner_y + (ident.mouth_y - 0.2 * h - corner_y) * bulge ** 0.7
    lower_in = corner_y + (ident.mouth_y + 0.8 * h - corner_y) * bulge ** 0.6
    bow = 1.0 + 0.35 * np.exp(-((np.abs(s) - 0.3) ** 2) / 0.02) - 0.25 * np.exp(-s ** 2 / 0.01)  # Cupid's bow
    upper_out = upper_in - ident.lip_upper * bulge ** 0.8 * bow - 0.012
    lower_out = lower_in + ident.lip_lower * bulge ** 0.8 + 0.012
    u = half * s
    return {name: np.stack([u, v], axis=1) for name, v in
            (("upper_in", upper_in), ("lower_in", lower_in), ("upper_out", upper_out),
             ("lower_out", lower_out))}


def _chin_drop(ident: Identity, opening: float) -> float:
    """How far the chin moves down: it follows the lower lip (80% of the opening), scaled by jaw_follow."""
    return 0.8 * ident.max_open * opening * ident.jaw_follow


def _face_contour(ident: Identity, opening: float, n: int = 72) -> np.ndarray:
    """Closed face outline (n, 2): an elliptic forehead and a superelliptic jaw that drops with the mouth."""
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    lower = s > 0
    e = 2.0 / ident.jaw_square
    u = np.where(lower, ident.face_w * np.sign(c) * np.abs(c) ** e, ident.face_w * c)
    v = np.where(lower, ident.chin * np.abs(s) ** e, s)
    return _drop_jaw(ident, opening, np.stack([u, v], axis=1))


def _drop_jaw(ident: Identity, opening: float, pts: np.ndarray) -> np.ndarray:
    """Move lower-face points down with the jaw: not at all above the nose, fully at the chin."""
    w = np.clip((pts[:, 1] - ident.nose_y) / (ident.chin - ident.nose_y), 0.0, 1.0) ** 1.3
    out = pts.copy()
    out[:, 1] += _chin_drop(ident, opening) * w
    out[:, 0] *= 1.0 - 0.06 * opening * w  # the jaw narrows a little as it opens
    return out


def _jaw_landmarks(ident: Identity, opening: float) -> np.ndarray:
    """iBUG jaw points 0-16: along the outline from the left at eye height, through the chin, to the right."""
    outline = _face_contour(ident, opening, n=720)
    angle = np.arctan2(outline[:, 1] - ident.eye_y, outline[:, 0])  # 0 = right, pi/2 = chin
    order = np.argsort(angle)
    wanted = np.linspace(np.pi, 0.0, 17)
    idx = order[np.searchsorted(angle[order], wanted).clip(0, len(order) - 1)]
    return outline[idx]


def _eye(ident: Identity, side: float) -> np.ndarray:
    """Six iBUG eye points, left to right: left corner, two upper, right corner, two lower."""
    cx, cy, w, h = side * ident.eye_sep, ident.eye_y, ident.eye_w, ident.eye_h
    xs = np.array([-1.0, -0.4, 0.4, 1.0, 0.4, -0.4]) * w
    ys = np.array([0.0, -0.9, -0.9, 0.0, 0.9, 0.9]) * h
    return np.stack([cx + xs, cy + ys], axis=1)


def _brows(ident: Identity) -> np.ndarray:
    """iBUG brow points 17-26 (10, 2): five per brow, arched, inner to outer tilted by ``brow_tilt``."""
    bx = np.linspace(0.15, 0.95, 5) * (ident.eye_sep + ident.eye_w)
    arch = 0.05 * np.sin(np.linspace(0.3, 2.8, 5))
    by = ident.eye_y - ident.brow_gap - arch + ident.brow_tilt * (bx / bx[-1])
    return np.concatenate([np.stack([-bx[::-1], by[::-1]], 1), np.stack([bx, by], 1)])


def face_landmarks(ident: Identity, opening: float) -> np.ndarray:
    """All 70 landmarks in face units (iBUG 68 order, then left and right cheek).

    Returns:
        (70, 2) float64.
    """
    lips = _lip_curves(ident, opening, n=7)
    outer = np.concatenate([lips["upper_out"], lips["lower_out"][::-1][1:-1]])  # 48-59: 7 upper, 5 lower
    outer[0], outer[6] = lips["upper_in"][0], lips["upper_in"][-1]  # corners are shared by both contours
    inner = np.concatenate([lips["upper_in"][[0, 2, 3, 4, 6]], lips["lower_in"][[4, 3, 2]]])  # 60-67
    bridge = np.stack([np.zeros(4), np.linspace(ident.eye_y, ident.nose_y - 0.05, 4)], 1)  # 27-30
    base = np.stack([np.linspace(-1, 1, 5) * ident.nose_w, ident.nose_y + np.array([0, .03, .04, .03, 0])], 1)
    eyes = np.concatenate([_eye(ident, -1.0), _eye(ident, 1.0)])  # 36-47
    return np.concatenate([_jaw_landmarks(ident, opening), _brows(ident), bridge, base, eyes, outer, inner,
                           _cheeks(ident, opening)])


def _cheeks(ident: Identity, opening: float) -> np.ndarray:
    """Left and right cheek centres (2, 2), between nose base and mouth, moving down with the jaw."""
    y = 0.5 * (ident.nose_y + ident.mouth_y)
    return _drop_jaw(ident, opening, np.array([[-0.55 * ident.face_w, y], [0.55 * ident.face_w, y]]))


# --- drawing ----------------------------------------------------------------------------------------


class _Canvas:
    """A uint8 RGB image plus the pose that maps face units to its pixels; draws anti-aliased shapes."""

    def __init__(self, image: np.ndarray, centre: np.ndarray, pixels_per_unit: float, angle: float) -> None:
        self.image = image
        self.centre = centre
        self.pixels_per_unit = pixels_per_unit
        c, s = np.cos(angle), np.sin(angle)
        self.rot = pixels_per_unit * np.array([[c, -s], [s, c]])

    def px(self, pts: np.ndarray) -> np.ndarray:
        """Face units (n, 2) -> canvas pixels (n, 2)."""
        return pts @ self.rot.T + self.centre

    def _roi(self, pts: np.ndarray, pad: float) -> tuple[int, int, int, int] | None:
        h, w = self.image.shape[:2]
        x0, y0 = np.floor(pts.min(0) - pad).astype(int)
        x1, y1 = np.ceil(pts.max(0) + pad + 1).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        return None if x1 <= x0 or y1 <= y0 else (x0, y0, x1, y1)

    def mask(self, pts: np.ndarray, thickness: int = 0, blur: float = 0.0, pad: float = 2.0
             ) -> Coverage | None:
        """Anti-aliased coverage (h, w) in [0, 1] of a polygon (or a polyline when thickness > 0).

        ``blur`` is a Gaussian sigma in face units (soft shading looks the same at every frame size).
        """
        p = self.px(pts)
        blur = blur * self.pixels_per_unit
        roi = self._roi(p, pad + thickness + 3 * blur)
        if roi is None:
            return None
        x0, y0, x1, y1 = roi
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        fixed = [np.round((p - [x0, y0]) * 16).astype(np.int32)]  # 4 fractional bits: sub-pixel edges
        if thickness:
            cv2.polylines(m, fixed, False, 255, thickness, cv2.LINE_AA, shift=4)
        else:
            cv2.fillPoly(m, fixed, 255, cv2.LINE_AA, shift=4)
        a = m.astype(np.float32) / 255.0
        if blur:
            a = cv2.GaussianBlur(a, (0, 0), blur)
        return a, roi

    def paint(self, coverage: Coverage | None, colour: Colour, alpha: float = 1.0) -> None:
        """Blend ``colour`` over the image where ``coverage`` says, times ``alpha``."""
        if coverage is None:
            return
        a, (x0, y0, x1, y1) = coverage
        roi = self.image[y0:y1, x0:x1].astype(np.float32)
        roi += (alpha * a)[..., None] * (np.asarray(colour, np.float32) - roi)
        self.image[y0:y1, x0:x1] = np.round(roi).astype(np.uint8)

    def _fixed(self, pts: np.ndarray) -> list[np.ndarray]:
        return [np.round(self.px(pts) * 16).astype(np.int32)]  # 4 fractional bits: sub-pixel edges

    def fill(self, pts: np.ndarray, colour: Colour, alpha: float = 1.0, blur: float = 0.0) -> None:
        """Polygon ``pts`` (n, 2) in face units; opaque sharp shapes go straight to OpenCV (faster)."""
        if alpha == 1.0 and not blur:
            cv2.fillPoly(self.image, self._fixed(pts), _rgb(colour), cv2.LINE_AA, shift=4)
        else:
            self.paint(self.mask(pts, blur=blur), colour, alpha)

    def line(self, pts: np.ndarray, colour: Colour, width_units: float, alpha: float = 1.0) -> None:
        """Open polyline through ``pts`` (n, 2), ``width_units`` thick (at least one pixel)."""
        thickness = max(1, int(round(width_units * self.pixels_per_unit)))
        if alpha == 1.0:
            cv2.polylines(self.image, self._fixed(pts), False, _rgb(colour), thickness, cv2.LINE_AA, shift=4)
        else:
            self.paint(self.mask(pts, thickness=thickness), colour, alpha)


def _rgb(colour: Colour) -> tuple[int, int, int]:
    r, g, b = (int(round(float(c))) for c in colour)
    return (r, g, b)


@functools.lru_cache(maxsize=4096)
def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 40) -> np.ndarray:
    """Polygon (n, 2) of an ellipse; cached (most are the same every frame of a video), so read-only."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    pts = np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)
    pts.setflags(write=False)
    return pts


def _shade(colour: Colour, factor: float) -> np.ndarray:
    return np.clip(np.asarray(colour, np.float32) * factor, 0, 255)


def _gradient(x: np.ndarray, y: np.ndarray, ident: Identity) -> np.ndarray:
    d = x * np.cos(ident.bg_angle) + y * np.sin(ident.bg_angle)
    return d / max(float(d.max()), 1e-6)


def _stripes(x: np.ndarray, y: np.ndarray, ident: Identity) -> np.ndarray:
    d = x * np.cos(ident.bg_angle) + y * np.sin(ident.bg_angle)
    return 0.5 + 0.5 * np.tanh(4 * np.sin(2 * np.pi * ident.bg_freq * d))


def _checker(x: np.ndarray, y: np.ndarray, ident: Identity) -> np.ndarray:
    f = np.pi * ident.bg_freq
    return 0.5 + 0.5 * np.tanh(4 * np.sin(f * x) * np.sin(f * y))


def _blobs(x: np.ndarray, y: np.ndarray, ident: Identity) -> np.ndarray:
    f = 2 * np.pi * ident.bg_freq / 3
    return 0.5 + 0.5 * np.sin(f * x + 3 * np.sin(2 * np.pi * y)) * np.cos(f * y)


# Background patterns: weight (H, W) in [0, 1] of colour bg_b over bg_a.
PATTERNS = {"gradient": _gradient, "stripes": _stripes, "checker": _checker, "blobs": _blobs}


def make_background(ident: Identity, size: int) -> np.ndarray:
    """The static backdrop (size, size, 3) uint8: gradient, stripes, checker or soft blobs."""
    if ident.background not in PATTERNS:
        raise ValueError(f"background {ident.background!r} unknown; known: {sorted(PATTERNS)}")
    y, x = np.mgrid[0:size, 0:size] / size
    a, b = np.asarray(ident.bg_a, np.float32), np.asarray(ident.bg_b, np.float32)
    w = PATTERNS[ident.background](x, y, ident).astype(np.float32)
    return np.round(a + (b - a) * w[..., None]).astype(np.uint8)


def _draw_body(torso: _Canvas, ident: Identity) -> None:
    """Shoulders and neck, on a canvas that follows the head only partly (the body moves less)."""
    fw = ident.face_w
    shoulders = np.array([[-3.0, 4.0], [-2.6, 2.0], [-1.2, 1.55], [1.2, 1.55], [2.6, 2.0], [3.0, 4.0]])
    torso.fill(shoulders, ident.shirt)
    neck = np.array([[-0.42 * fw, 0.3], [0.42 * fw, 0.3], [0.48 * fw, 1.9], [-0.48 * fw, 1.9]])
    torso.fill(neck, _shade(ident.skin, 0.82))
    torso.fill(np.array([[-0.55, 1.58], [0.0, 1.9], [0.55, 1.58], [0.0, 1.7]]), _shade(ident.shirt, 0.7))


def _draw_back_hair(cv: _Canvas, ident: Identity) -> None:
    fw = ident.face_w
    if ident.hair_style == "long":
        hang = np.array([[-1.22 * fw, -0.4], [-1.3 * fw, 1.9], [1.3 * fw, 1.9], [1.22 * fw, -0.4]])
        cv.fill(hang, ident.hair)
    if ident.hair_style in ("long", "bob"):
        cv.fill(_ellipse(0, -0.1, 1.2 * fw, 1.15), ident.hair)


def _draw_face(cv: _Canvas, ident: Identity, opening: float) -> None:
    """Ears, the face outline, and the shading that moves with the jaw (chin, cheeks, folds)."""
    fw, skin = ident.face_w, ident.skin
    for side in (-1.0, 1.0):
        cv.fill(_ellipse(side * fw * 0.98, ident.eye_y + 0.12, 0.13, 0.2), _shade(skin, 0.93))
        cv.fill(_ellipse(side * fw * 1.0, ident.eye_y + 0.12, 0.06, 0.12), _shade(skin, 0.8))
    contour = _face_contour(ident, opening)
    # Shadow of the jaw on the neck: it slides down with the chin, a strong lower-face cue.
    cv.fill(contour + [0.0, 0.07], _shade(skin, 0.62), alpha=0.8, blur=0.02)
    cv.fill(contour, skin)
    chin = _drop_jaw(ident, opening, np.array([[0.0, ident.chin - 0.14]]))[0]
    cv.fill(_ellipse(chin[0], chin[1], 0.22, 0.09), _shade(skin, 1.06), alpha=0.6, blur=0.03)
    lips = _lip_curves(ident, opening)
    crease = _drop_jaw(ident, opening, np.array([[-0.12, 0.0], [0.0, 0.035], [0.12, 0.0]]) +
                       [0.0, ident.mouth_y + ident.max_open * opening * 0.8 + ident.lip_lower + 0.09])
    cv.line(crease, _shade(skin, 0.82), 0.025, alpha=0.7)
    for side in (-1.0, 1.0):
        cheek = _cheeks(ident, opening)[0 if side < 0 else 1]
        cv.fill(_ellipse(cheek[0], cheek[1], 0.2 - 0.03 * opening, 0.14 + 0.05 * opening),
                (225.0, 120.0, 120.0), alpha=0.22, blur=0.03)
        corner = lips["upper_in"][0 if side < 0 else -1]
        fold = np.array([[side * (ident.nose_w + 0.06), ident.nose_y - 0.02],
                         [corner[0] + side * 0.1, 0.5 * (ident.nose_y + corner[1]) + 0.02],
                         [corner[0] + side * 0.06, corner[1] + 0.08]])
        cv.line(fold, _shade(skin, 0.78), 0.022, alpha=0.6)


def _draw_front_hair(cv: _Canvas, ident: Identity) -> None:
    """The hair over the head top, clipped at a hairline that each style shapes differently."""
    if ident.hair_style == "bald":
        return
    fw = ident.face_w
    cap = _ellipse(0, 0.0, 1.08 * fw, 1.1, n=90).copy()
    if ident.hair_style == "curly":
        t = np.linspace(0, 2 * np.pi, len(cap), endpoint=False)
        cap = cap * (1.0 + 0.06 * np.abs(np.sin(9 * t)))[:, None]
    sides = {"short": 0.05, "long": 0.75, "bob": 0.7, "buzz": -0.1, "curly": 0.2}[ident.hair_style]
    top = -0.62 if ident.hair_style != "buzz" else -0.72
    u = np.abs(cap[:, 0]) / (1.08 * fw)
    hairline = top + (sides - top) * np.clip((u - 0.55) / 0.45, 0, 1) ** 1.5 + 0.08 * np.sin(6 * cap[:, 0])
    cap[:, 1] = np.minimum(cap[:, 1], hairline)
    colour = np.asarray(ident.hair)
    if ident.hair_style == "buzz":  # stubble: skin shows through
        colour = 0.5 * colour + 0.5 * np.asarray(ident.skin)
    cv.fill(cap, colour)


def _draw_eyes(cv: _Canvas, ident: Identity, blink: float) -> None:
    """Whites, iris, pupil, then an eyelid lowered by ``blink`` (0 open, 1 shut), brows above."""
    for side in (-1.0, 1.0):
        cx, cy = side * ident.eye_sep, ident.eye_y
        white = _ellipse(cx, cy, ident.eye_w, ident.eye_h)
        cv.fill(white, (238.0, 236.0, 232.0))
        cv.fill(_ellipse(cx, cy, 0.9 * ident.eye_h, 0.9 * ident.eye_h, n=24), ident.iris)
        cv.fill(_ellipse(cx, cy, 0.4 * ident.eye_h, 0.4 * ident.eye_h, n=16), (20.0, 18.0, 18.0))
        lid = white.copy()
        lid[:, 1] = np.minimum(lid[:, 1], cy - ident.eye_h + 2.0 * ident.eye_h * blink)
        cv.fill(lid, _shade(ident.skin, 0.9))
        edge = white[white[:, 1] <= cy + 1e-9]
        edge = edge[np.argsort(edge[:, 0])]
        edge[:, 1] = np.minimum(edge[:, 1], cy - ident.eye_h + 2.0 * ident.eye_h * blink)
        cv.line(edge, (35.0, 28.0, 28.0), 0.018)
    brows = _brows(ident)
    cv.line(brows[:5], _shade(ident.hair, 0.8), ident.brow_thick)
    cv.line(brows[5:], _shade(ident.hair, 0.8), ident.brow_thick)


def _draw_nose(cv: _Canvas, ident: Identity) -> None:
    skin = ident.skin
    cv.line(np.array([[0.03, ident.eye_y + 0.05], [0.05, ident.nose_y - 0.06], [0.0, ident.nose_y]]),
            _shade(skin, 0.85), 0.02, alpha=0.6)
    cv.fill(_ellipse(0, ident.nose_y - 0.02, ident.nose_w, 0.07), _shade(skin, 1.04), alpha=0.7, blur=0.015)
    for side in (-1.0, 1.0):  # nostrils: darker skin, far brighter than the mouth interior
        nostril = _ellipse(side * 0.45 * ident.nose_w, ident.nose_y + 0.02, 0.035, 0.02, n=16)
        cv.fill(nostril, _shade(skin, 0.72))


def _draw_mouth(cv: _Canvas, ident: Identity, opening: float) -> None:
    """Lips, then the dark interior between the inner lip lines, with teeth clipped to it."""
    lips = _lip_curves(ident, opening)
    cv.fill(np.concatenate([lips["upper_out"], lips["lower_out"][::-1]]), ident.lip)
    cv.fill(np.concatenate([lips["upper_out"], lips["upper_in"][::-1]]), _shade(ident.lip, 0.9), alpha=0.5)
    cv.line(lips["upper_in"], _shade(ident.lip, 0.82), 0.015, alpha=0.6)  # the lip line when closed
    h = ident.max_open * opening
    if h < 1e-3:
        return
    inner = cv.mask(np.concatenate([lips["upper_in"], lips["lower_in"][::-1]]))
    cv.paint(inner, MOUTH_INTERIOR)
    # Teeth stay inside the interior: the upper row shows first, the lower row only when wide open.
    upper = np.concatenate([lips["upper_in"], lips["upper_in"][::-1] + [0.0, min(ident.teeth, 0.4 * h)]])
    lower_h = min(0.6 * ident.teeth, max(0.0, 0.25 * h - 0.02))
    for band in (upper, np.concatenate([lips["lower_in"], lips["lower_in"][::-1] - [0.0, lower_h]])):
        teeth = cv.mask(band)
        if teeth is not None and inner is not None:
            cv.paint(_intersect(teeth, inner), TEETH)


def _intersect(a: Coverage, b: Coverage) -> Coverage | None:
    """Product of two coverages on the overlap of their windows (a shape clipped to another)."""
    (ma, ra), (mb, rb) = a, b
    x0, y0, x1, y1 = max(ra[0], rb[0]), max(ra[1], rb[1]), min(ra[2], rb[2]), min(ra[3], rb[3])
    if x1 <= x0 or y1 <= y0:
        return None
    cut = lambda m, r: m[y0 - r[1]:y1 - r[1], x0 - r[0]:x1 - r[0]]
    return cut(ma, ra) * cut(mb, rb), (x0, y0, x1, y1)


@dataclass(frozen=True)
class Pose:
    """Head pose of one frame: shift (fraction of frame size), rotation (radians), scale."""

    tx: float = 0.0
    ty: float = 0.0
    angle: float = 0.0
    scale: float = 1.0


def _canvases(ident: Identity, pose: Pose, image: np.ndarray, size_scale: float = 1.0) -> tuple[_Canvas, _Canvas]:
    size = image.shape[0]
    unit = ident.face_scale * size * size_scale
    centre = np.array([0.5 + pose.tx, 0.42 + pose.ty]) * size
    head = _Canvas(image, centre, unit * pose.scale, pose.angle)
    torso_centre = np.array([0.5 + 0.5 * pose.tx, 0.42 + 0.5 * pose.ty]) * size
    if size_scale != 1.0:  # a person placed off-centre: the torso stays under the head
        torso_centre = centre
    return head, _Canvas(image, torso_centre, unit, 0.3 * pose.angle)


def draw_person(image: np.ndarray, ident: Identity, opening: float, blink: float, pose: Pose,
                supersample: int = 2, size_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Draw one person onto a drawing-resolution ``image`` in place (several people: call in depth order).

    Args:
        image: (S * supersample, S * supersample, 3) uint8, drawn on.
        size_scale: the person's size relative to the one-person framing (1 = :func:`render_frame`'s).

    Returns:
        landmarks (70, 2) and face box (4,) in output pixels (after shrinking by ``supersample``).
    """
    if not 0.0 <= opening <= 1.0:
        raise ValueError(f"opening={opening} must be in [0, 1]")
    head, torso = _canvases(ident, pose, image, size_scale)
    _draw_back_hair(head, ident)
    _draw_body(torso, ident)
    _draw_face(head, ident, opening)
    _draw_front_hair(head, ident)
    _draw_eyes(head, ident, blink)
    _draw_nose(head, ident)
    _draw_mouth(head, ident, opening)
    # Pixel centres: output pixel i covers drawing pixels [s*i, s*i + s), centred at s*i + (s - 1) / 2.
    to_out = lambda p: ((p - (supersample - 1) / 2.0) / supersample).astype(np.float32)
    landmarks = to_out(head.px(face_landmarks(ident, opening)))
    outline = to_out(head.px(_face_contour(ident, opening)))
    return landmarks, np.concatenate([outline.min(0), outline.max(0)]).astype(np.float32)


def render_frame(ident: Identity, background: np.ndarray, opening: float, blink: float, pose: Pose,
                 size: int, supersample: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one frame.

    Args:
        ident: the person.
        background: (size * supersample, size * supersample, 3) uint8 from :func:`make_background`.
        opening: mouth opening in [0, 1].
        blink: eyelid closure in [0, 1].
        pose: head pose.
        size: output side in pixels.
        supersample: drawing resolution factor (area-averaged down to ``size``).

    Returns:
        frame (size, size, 3) uint8 RGB, landmarks (70, 2) float32 pixels, face box (4,) float32
        x0, y0, x1, y1 in pixels (the face outline, forehead to chin).
    """
    big = size * supersample
    if background.shape != (big, big, 3):
        raise ValueError(f"background must be {(big, big, 3)} for size={size}, supersample={supersample}; "
                         f"got {background.shape}")
    image = background.copy()
    landmarks, box = draw_person(image, ident, opening, blink, pose, supersample)
    frame = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return frame, landmarks, box


@dataclass(frozen=True)
class RenderedVideo:
    """Frames and their truth.

    Attributes:
        frames: (T, H, W, 3) uint8 RGB.
        landmarks: (T, 70, 2) float32 pixels (iBUG 68 order, then left and right cheek).
        boxes: (T, 4) float32 face boxes x0, y0, x1, y1.
        opening: (T,) float32 mouth opening drawn in each frame.
        blink: (T,) float32 eyelid closure drawn in each frame.
    """

    frames: np.ndarray
    landmarks: np.ndarray
    boxes: np.ndarray
    opening: np.ndarray
    blink: np.ndarray


def render_video(ident: Identity, motion: Motion, opening: np.ndarray, size: int = 128,
                 supersample: int = 2) -> RenderedVideo:
    """Draw every frame of one video; ``opening`` (T,) and ``motion`` (T frames) must agree in length."""
    opening = np.asarray(opening, dtype=np.float32)
    if opening.ndim != 1 or len(opening) != len(motion.tx):
        raise ValueError(f"opening must be (T,) with T={len(motion.tx)} frames of motion, "
                         f"got {opening.shape}")
    if size < 16:
        raise ValueError(f"size={size} is too small to draw a face; use at least 16 pixels")
    background = make_background(ident, size * supersample)
    poses = [Pose(float(x), float(y), float(a), float(s))
             for x, y, a, s in zip(motion.tx, motion.ty, motion.angle, motion.scale)]
    out = [render_frame(ident, background, float(o), float(b), pose, size, supersample)
           for o, b, pose in zip(opening, motion.blink, poses)]
    frames, landmarks, boxes = (np.stack(parts) for parts in zip(*out))
    return RenderedVideo(frames, landmarks, boxes, opening, np.asarray(motion.blink, np.float32))
