"""Procedural grayscale faces with independent identity and expression factors.

Everything here is pure NumPy and deterministic given a `np.random.Generator`. A face is drawn
analytically on a pixel grid (soft-edged shapes, so any size from 32 to 128 renders cleanly):
identity fixes the face outline, proportions, skin/hair tones and feature geometry; expression is a
vector of facial action parameters (loosely after FACS action units) scaled by an intensity in
[0, 1]; nuisance adds small pose, lighting and pixel noise.

Coordinates: `u` runs left to right and `v` top to bottom, both in [-1, 1] over the image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

# Same names and order as CK+'s emotion codes 1..7 (label = code - 1).
EXPRESSIONS = ("anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise")

# Action parameters, each roughly in [-1, 1]; 0 is the neutral face.
ACTIONS = (
    "brow_inner_up",  # AU1
    "brow_outer_up",  # AU2
    "brow_lower",  # AU4: lowered and drawn together.
    "lid_raise",  # AU5: wide eyes; negative = drooping lids.
    "lid_tighten",  # AU6/7: squint and cheek raise.
    "nose_wrinkle",  # AU9
    "upper_lip_raise",  # AU10
    "corner_up",  # AU12
    "corner_down",  # AU15
    "lip_stretch",  # AU20
    "jaw_drop",  # AU25-27
    "asym",  # AU14 on one side only (contempt).
    "lip_press",  # AU23/24
    "chin_raise",  # AU17
)
_A = {name: i for i, name in enumerate(ACTIONS)}
_ZOOM = 1.2
# Pose constants shared by the renderer and its landmarks.
_V_OFFSET = 0.04
_YAW_SHIFT = 0.09
_YAW_NARROW = 0.08

# Apex action vectors per expression, following the usual EMFACS prototypes.
_PROTOTYPES = {
    "anger": {
        "brow_lower": 1.0,
        "lid_raise": 0.35,
        "lid_tighten": 0.5,
        "lip_press": 1.0,
        "chin_raise": 0.4,
    },
    "contempt": {"asym": 1.0, "lid_tighten": 0.15},
    "disgust": {
        "nose_wrinkle": 1.0,
        "upper_lip_raise": 0.9,
        "corner_down": 0.4,
        "brow_lower": 0.45,
        "lid_tighten": 0.45,
    },
    "fear": {
        "brow_inner_up": 1.0,
        "brow_outer_up": 0.5,
        "brow_lower": 0.45,
        "lid_raise": 1.0,
        "lip_stretch": 1.0,
        "jaw_drop": 0.35,
    },
    "happiness": {"lid_tighten": 0.6, "corner_up": 1.0, "jaw_drop": 0.3, "lip_stretch": 0.2},
    "sadness": {
        "brow_inner_up": 0.9,
        "brow_lower": 0.3,
        "lid_raise": -0.35,
        "corner_down": 1.0,
        "chin_raise": 0.6,
    },
    "surprise": {
        "brow_inner_up": 1.0,
        "brow_outer_up": 1.0,
        "lid_raise": 1.0,
        "jaw_drop": 1.0,
    },
}


def expression_actions(expression: int | str) -> np.ndarray:
    """Apex action vector of one expression class (index into EXPRESSIONS, or its name).

    Returns:
      float64 [len(ACTIONS)].
    """
    name = EXPRESSIONS[expression] if isinstance(expression, int | np.integer) else expression
    if name not in _PROTOTYPES:
        raise ValueError(f"Unknown expression {expression!r}; allowed: {EXPRESSIONS}.")
    vec = np.zeros(len(ACTIONS))
    for key, value in _PROTOTYPES[name].items():
        vec[_A[key]] = value
    return vec


@dataclasses.dataclass(frozen=True)
class Identity:
    """One subject's fixed appearance and expression style (all scalars unless stated)."""

    face_w: float  # Half-width of the face outline.
    face_h: float  # Half-height.
    face_cy: float  # Vertical centre.
    jaw: float  # Superellipse exponent of the lower half (small = pointed chin).
    skin: float  # Skin gray level in [0, 1].
    background: float
    hair: float  # Hair gray level.
    hairline: float  # v of the hairline at the centre.
    hair_volume: float
    eye_y: float
    eye_sep: float  # Half distance between eye centres.
    eye_w: float  # Half-width of an eye.
    eye_h: float  # Half-height of an open eye.
    iris: float  # Iris gray level.
    brow_gap: float  # Brow height above the eye centre.
    brow_thick: float
    brow_len: float
    brow_tone: float
    brow_arch: float
    nose_len: float  # Nose tip v.
    nose_w: float
    mouth_y: float
    mouth_w: float  # Half-width.
    lip_thick: float
    lip_tone: float  # Lip darkness relative to skin.
    glasses: bool
    rest: np.ndarray  # [len(ACTIONS)] resting action bias (e.g. a naturally down-turned mouth).
    gain: np.ndarray  # [len(EXPRESSIONS)] how strongly this subject poses each expression.
    style: np.ndarray  # [len(EXPRESSIONS), len(ACTIONS)] idiosyncratic offsets at apex.


def sample_identity(rng: np.random.Generator, style_scale: float = 0.1) -> Identity:
    """Draws a random subject. `style_scale` sets how much subjects differ in posing expressions."""
    u = rng.uniform
    skin = u(0.45, 0.85)
    # Keep the background apart from the skin so the outline stays visible.
    background = (skin + u(0.2, 0.6) * rng.choice([-1.0, 1.0])) % 1.0
    background = float(np.clip(background, 0.05, 0.95))
    return Identity(
        face_w=u(0.50, 0.66),
        face_h=u(0.70, 0.84),
        face_cy=u(0.02, 0.10),
        jaw=u(1.5, 2.6),
        skin=skin,
        background=background,
        hair=u(0.03, 0.9),
        hairline=u(-0.62, -0.38),
        hair_volume=u(0.02, 0.14),
        eye_y=u(-0.16, -0.04),
        eye_sep=u(0.20, 0.29),
        eye_w=u(0.085, 0.12),
        eye_h=u(0.035, 0.055),
        iris=u(0.05, 0.45),
        brow_gap=u(0.10, 0.16),
        brow_thick=u(0.022, 0.048),
        brow_len=u(0.11, 0.17),
        brow_tone=u(0.05, 0.45),
        brow_arch=u(0.0, 0.035),
        nose_len=u(0.18, 0.30),
        nose_w=u(0.045, 0.075),
        mouth_y=u(0.40, 0.52),
        mouth_w=u(0.14, 0.22),
        lip_thick=u(0.018, 0.04),
        lip_tone=u(0.55, 0.9),
        glasses=bool(rng.random() < 0.2),
        rest=rng.normal(0.0, 0.5 * style_scale, len(ACTIONS)),
        gain=u(1.0 - 1.5 * style_scale, 1.0 + 0.5 * style_scale, len(EXPRESSIONS)),
        style=rng.normal(0.0, style_scale, (len(EXPRESSIONS), len(ACTIONS))),
    )


@dataclasses.dataclass(frozen=True)
class Nuisance:
    """Per-image pose, lighting and noise."""

    roll: float = 0.0  # In-plane rotation, radians.
    yaw: float = 0.0  # Approximate out-of-plane turn in [-1, 1].
    scale: float = 1.0
    shift_u: float = 0.0
    shift_v: float = 0.0
    light_u: float = 0.0  # Directional light gradient across the face.
    light_v: float = 0.0
    brightness: float = 0.0
    contrast: float = 1.0
    noise: float = 0.0  # Gaussian pixel noise std, in [0, 1] gray units.


def sample_nuisance(rng: np.random.Generator, amount: float = 1.0) -> Nuisance:
    """Draws pose, lighting and noise; `amount` scales all of them (0 = canonical)."""
    return Nuisance(
        roll=rng.normal(0.0, 0.07 * amount),
        yaw=float(np.clip(rng.normal(0.0, 0.35 * amount), -1, 1)),
        scale=1.0 + rng.normal(0.0, 0.05 * amount),
        shift_u=rng.normal(0.0, 0.04 * amount),
        shift_v=rng.normal(0.0, 0.04 * amount),
        light_u=rng.normal(0.0, 0.25 * amount),
        light_v=rng.normal(0.0, 0.12 * amount),
        brightness=rng.normal(0.0, 0.06 * amount),
        contrast=1.0 + rng.normal(0.0, 0.12 * amount),
        noise=abs(rng.normal(0.0, 0.03 * amount)),
    )


def jitter_nuisance(base: Nuisance, rng: np.random.Generator, amount: float = 0.15) -> Nuisance:
    """Small frame-to-frame change of a sequence's nuisance (head motion, flicker)."""
    return dataclasses.replace(
        base,
        roll=base.roll + rng.normal(0.0, 0.02 * amount),
        yaw=float(np.clip(base.yaw + rng.normal(0.0, 0.1 * amount), -1, 1)),
        shift_u=base.shift_u + rng.normal(0.0, 0.02 * amount),
        shift_v=base.shift_v + rng.normal(0.0, 0.02 * amount),
    )


def _soft(signed: np.ndarray, edge: float) -> np.ndarray:
    """Coverage in [0, 1] from a signed distance (negative inside), anti-aliased over `edge`."""
    return np.clip(0.5 - signed / edge, 0.0, 1.0)


def _blend(img: np.ndarray, alpha: np.ndarray, value: float | np.ndarray) -> np.ndarray:
    return img + alpha * (value - img)


def _polyline_dist(u: np.ndarray, v: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Distance from every pixel to a polyline with vertices `pts` [P, 2] (u, v)."""
    a, b = pts[:-1], pts[1:]
    d = b - a
    pu = u[..., None] - a[:, 0]
    pv = v[..., None] - a[:, 1]
    t = np.clip((pu * d[:, 0] + pv * d[:, 1]) / np.maximum((d**2).sum(1), 1e-12), 0.0, 1.0)
    return np.sqrt((pu - t * d[:, 0]) ** 2 + (pv - t * d[:, 1]) ** 2).min(-1)


def _ellipse_sd(u, v, cu, cv, ru, rv):
    """Approximate signed distance to an axis-aligned ellipse (exact for circles)."""
    r = np.sqrt(((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2)
    return (r - 1.0) * min(ru, rv)


def _named(acts: np.ndarray) -> dict[str, float]:
    """Action vector [len(ACTIONS)] -> {action name: value}."""
    return {name: float(acts[i]) for name, i in _A.items()}


def _pos(x: float) -> float:
    return max(x, 0.0)


def _lid_heights(idt: Identity, a: dict[str, float]) -> tuple[float, float]:
    """Heights of the upper and lower lid arcs above/below the eye's centre line."""
    lid_open = 1.0 + 0.8 * a["lid_raise"] - 0.55 * _pos(a["lid_tighten"])
    up_h = idt.eye_h * max(lid_open, 0.15)
    lo_h = idt.eye_h * 0.75 * (1.0 - 0.45 * _pos(a["lid_tighten"]))
    return up_h, lo_h


def _brow_points(idt: Identity, a: dict[str, float], side: float, t: np.ndarray) -> np.ndarray:
    """Points [len(t), 2] (u, v) on a brow's centre line, t = 0 at its inner end, 1 outer."""
    by = idt.eye_y - idt.brow_gap
    inner_u = side * (idt.eye_sep - idt.brow_len * 0.75 - 0.035 * _pos(a["brow_lower"]))
    outer_u = side * (idt.eye_sep + idt.brow_len)
    inner_v = by + 0.045 * a["brow_lower"] - 0.075 * a["brow_inner_up"]
    outer_v = by + 0.015 * a["brow_lower"] - 0.065 * a["brow_outer_up"] + 0.01
    arch = (idt.brow_arch + 0.02 * _pos(a["brow_outer_up"])) * np.sin(np.pi * t)
    return np.stack(
        [inner_u + (outer_u - inner_u) * t, inner_v + (outer_v - inner_v) * t - arch], 1
    )


def _nose(idt: Identity, a: dict[str, float]) -> tuple[float, float]:
    """(v of the nose tip, nostril spread), both moved by a nose wrinkle."""
    tip = idt.eye_y + idt.nose_len - 0.02 * _pos(a["nose_wrinkle"])
    nw = idt.nose_w * (1.0 + 0.3 * _pos(a["nose_wrinkle"]))
    return tip, nw


@dataclasses.dataclass(frozen=True)
class _Mouth:
    """Mouth geometry of one action vector: half-width, centre-line v, corner bend, opening."""

    hw: float
    my: float
    bend: float
    opening: float
    lip: float  # Lip thickness.


def _mouth(idt: Identity, a: dict[str, float]) -> _Mouth:
    hw = idt.mouth_w * (1.0 + 0.25 * a["corner_up"] + 0.4 * _pos(a["lip_stretch"]))
    hw *= 1.0 - 0.25 * _pos(a["lip_press"]) - 0.2 * _pos(a["jaw_drop"])
    my = idt.mouth_y + 0.03 * _pos(a["jaw_drop"]) - 0.02 * _pos(a["chin_raise"])
    bend = -0.075 * a["corner_up"] + 0.06 * a["corner_down"]
    opening = (
        0.13 * _pos(a["jaw_drop"]) + 0.025 * _pos(a["lip_stretch"]) + 0.02 * _pos(a["corner_up"])
    )
    opening *= 1.0 - 0.8 * _pos(a["lip_press"])
    lip = idt.lip_thick * (1.0 - 0.6 * min(_pos(a["lip_press"]), 1.0))
    return _Mouth(hw=hw, my=my, bend=bend, opening=opening, lip=lip)


def _lips(m: _Mouth, a: dict[str, float], t):
    """v of the lip curves at positions t in [-1, 1] across the mouth (-1 = left corner).

    Returns:
      (upper outer, upper inner, lower inner, lower outer), each shaped like t.
    """
    lift = -0.07 * a["asym"] * np.clip(t, 0.0, None) ** 2  # Only the right corner rises.
    base = m.my + m.bend * t**2 + lift
    prof = np.clip(1.0 - t**2, 0.0, None) ** 0.7
    up_in = base - (0.35 * m.opening + 0.015 * _pos(a["upper_lip_raise"])) * prof
    lo_in = base + 0.65 * m.opening * prof
    up_out = up_in - (m.lip * 0.8 + 0.01) * prof - 0.02 * _pos(a["upper_lip_raise"]) * prof
    lo_out = lo_in + (m.lip + 0.01) * prof
    return up_out, up_in, lo_in, lo_out


def render_face(
    identity: Identity,
    expression: int | str | None,
    intensity: float,
    size: int,
    rng: np.random.Generator | None = None,
    nuisance: Nuisance | None = None,
) -> np.ndarray:
    """Renders one face.

    Args:
      identity: the subject (see `sample_identity`).
      expression: class index into EXPRESSIONS, its name, or None for neutral.
      intensity: 0 = neutral, 1 = apex.
      size: output height = width in pixels.
      rng: source of pixel noise (and of the nuisance when `nuisance` is None). None renders the
        clean canonical face: no pose change, flat lighting, no noise (for ground-truth metrics).
      nuisance: pose/lighting/noise; drawn from `rng` when None and `rng` is given.

    Returns:
      float32 [size, size] gray levels in [0, 1].
    """
    if nuisance is None:
        nuisance = sample_nuisance(rng) if rng is not None else Nuisance()
    return _draw(identity, _actions(identity, expression, intensity), size, nuisance, rng)


def _actions(identity: Identity, expression: int | str | None, intensity: float) -> np.ndarray:
    """The subject's action vector [len(ACTIONS)] at `intensity` of `expression` (None = rest)."""
    acts = identity.rest.copy()
    if expression is not None:
        k = EXPRESSIONS.index(expression) if isinstance(expression, str) else int(expression)
        apex = identity.gain[k] * expression_actions(k) + identity.style[k]
        acts = acts + intensity * apex
    return acts


def face_landmarks(
    identity: Identity,
    expression: int | str | None,
    intensity: float,
    size: int,
    nuisance: Nuisance | None = None,
) -> np.ndarray:
    """The 68 landmarks of the face `render_face` draws with the same arguments.

    Points follow the usual 68-point layout (0-based): jaw 0-16, brows 17-26, nose 27-35, eyes
    36-47, mouth 48-67, "left" meaning image left. They are placed on the renderer's own shapes
    (outline, brow centre lines, lid arcs, nostrils, lip curves), so they move with expression and
    pose exactly as the drawing does.

    Returns:
      float32 [68, 2] (x, y) pixel coordinates, pixel centres at integers.
    """
    nz = nuisance if nuisance is not None else Nuisance()
    a = _named(_actions(identity, expression, intensity))
    features = np.concatenate(
        [_brow_landmarks(identity, a), _nose_landmarks(identity, a)]
        + [_eye_landmarks(identity, a, side) for side in (-1.0, 1.0)]
        + [_mouth_landmarks(identity, a)]
    )
    # Inner features live in yaw-shifted coordinates; the outline does not (as in `_pose_grid`).
    features[:, 0] = features[:, 0] * (1.0 - _YAW_NARROW * abs(nz.yaw)) + _YAW_SHIFT * nz.yaw
    face = np.concatenate([_jaw_landmarks(identity), features])
    return _face_to_pixels(face, nz, size).astype(np.float32)


# Classes of `face_part_masks`, in label order.
PARTS = ("background", "skin", "eyes", "lips")
_OPAQUE = 0.5  # A layer owns a pixel where its opacity reaches this (its shape's border).


def face_part_masks(
    identity: Identity,
    expression: int | str | None,
    intensity: float,
    size: int,
    nuisance: Nuisance | None = None,
) -> np.ndarray:
    """The parts of the face `render_face` draws with the same arguments, one label a pixel.

    Labels index PARTS: 0 background (also hair, neck, the hair fringe over the forehead and the
    mouth's opening), 1 skin, 2 eyes (the opening between the lids: white and iris), 3 lips. They
    come from the shapes the painters blend, each owning the pixels where its opacity is at least
    one half, and are laid in the painting order so that a later layer wins: skin (the face
    outline), fringe, eyes, lips, mouth opening. Strokes drawn on the skin (brows, lid lines,
    nose, folds, glasses) stay skin. Pixel noise does not move a part, so no `rng` is taken:
    pass the `nuisance` the image was rendered with.

    Returns:
      int32 [size, size].
    """
    nz = nuisance if nuisance is not None else Nuisance()
    a = _named(_actions(identity, expression, intensity))
    grid = _pose_grid(size, nz)
    _, cov = _face_coverage(identity, grid)
    f = _features(grid, cov)
    labels = np.zeros((size, size), np.int32)
    labels[cov >= _OPAQUE] = 1
    labels[_fringe_alpha(identity, grid, cov) >= _OPAQUE] = 0
    for side in (-1.0, 1.0):
        labels[_ink_alpha(f, _eye_shape(f, identity, a, side).inside) >= _OPAQUE] = 2
    mouth = _mouth_shape(f, identity, a)
    labels[_ink_alpha(f, mouth.lips_sd) >= _OPAQUE] = 3
    labels[_ink_alpha(f, mouth.opening_sd) >= _OPAQUE] = 0
    return labels


def face_mask(identity: Identity, size: int, nuisance: Nuisance | None = None) -> np.ndarray:
    """The face region `render_face` draws for `identity` with `nuisance` (its pose and place):
    the pixels the face outline owns (opacity >= 1/2), forehead under a fringe included. The
    outline does not move with the expression, so no expression is taken.

    Returns:
      bool [size, size].
    """
    grid = _pose_grid(size, nuisance if nuisance is not None else Nuisance())
    return _face_coverage(identity, grid)[1] >= _OPAQUE


def _jaw_landmarks(idt: Identity) -> np.ndarray:
    """17 points [17, 2] (u, v) on the face outline from the left temple under the chin to the
    right, starting a little above the outline's centre height (about eye level)."""
    theta = np.pi + 0.25 - np.arange(17) * (np.pi + 0.5) / 16
    cu, sv = np.cos(theta), np.sin(theta)
    p = np.where(sv > 0, idt.jaw, 2.2)  # The outline's superellipse exponent per half.
    u = idt.face_w * np.sign(cu) * np.abs(cu) ** (2.0 / p)
    v = idt.face_cy + idt.face_h * np.sign(sv) * np.abs(sv) ** (2.0 / p)
    return np.stack([u, v], 1)


def _brow_landmarks(idt: Identity, a: dict[str, float]) -> np.ndarray:
    """10 points [10, 2]: left brow outer to inner, then right brow inner to outer."""
    t = np.linspace(0.0, 1.0, 5)
    return np.concatenate([_brow_points(idt, a, -1.0, t[::-1]), _brow_points(idt, a, 1.0, t)])


def _nose_landmarks(idt: Identity, a: dict[str, float]) -> np.ndarray:
    """9 points [9, 2]: the bridge from between the eyes to the tip, then the nostril base from
    left to right."""
    tip, nw = _nose(idt, a)
    bridge_v = idt.eye_y + (tip - 0.02 - idt.eye_y) * np.linspace(0.0, 1.0, 4)
    bridge = np.stack([np.zeros(4), bridge_v], 1)
    base_u = nw * np.array([-0.95, -0.6, 0.0, 0.6, 0.95])
    base_v = tip + np.array([0.0, 0.016, 0.016, 0.016, 0.0])
    return np.concatenate([bridge, np.stack([base_u, base_v], 1)])


def _eye_landmarks(idt: Identity, a: dict[str, float], side: float) -> np.ndarray:
    """6 points [6, 2] of one eye, clockwise from its left corner: corner, two on the upper lid,
    corner, two on the lower lid (the 68-point order for either eye)."""
    up_h, lo_h = _lid_heights(idt, a)
    du = np.array([-1.0, -1 / 3, 1 / 3, 1.0, 1 / 3, -1 / 3])
    prof = 1.0 - du**2
    lid = np.array([0.0, -up_h, -up_h, 0.0, lo_h, lo_h])
    return np.stack([side * idt.eye_sep + du * idt.eye_w, idt.eye_y + lid * prof], 1)


def _mouth_landmarks(idt: Identity, a: dict[str, float]) -> np.ndarray:
    """20 points [20, 2]: outer lip clockwise from the left corner (12), inner lip likewise (8)."""
    m = _mouth(idt, a)
    t_top = np.linspace(-1.0, 1.0, 7)
    t_bottom = t_top[-2:0:-1]
    up_out, _, _, _ = _lips(m, a, t_top)
    _, _, _, lo_out = _lips(m, a, t_bottom)
    outer = np.stack([np.concatenate([t_top, t_bottom]), np.concatenate([up_out, lo_out])], 1)
    # Inner corners a little inside the outer ones, where the lips part.
    t_inner = np.array([-0.9, -0.5, 0.0, 0.5, 0.9, 0.5, 0.0, -0.5])
    _, up_in, lo_in, _ = _lips(m, a, t_inner)
    inner_v = np.concatenate([[(up_in[0] + lo_in[0]) / 2], up_in[1:4]])
    inner_v = np.concatenate([inner_v, [(up_in[4] + lo_in[4]) / 2], lo_in[5:]])
    inner = np.stack([t_inner, inner_v], 1)
    points = np.concatenate([outer, inner])
    return points * np.array([m.hw, 1.0])


def _face_to_pixels(points: np.ndarray, nz: Nuisance, size: int) -> np.ndarray:
    """Face coordinates [P, 2] (u, v) to pixel (x, y): the inverse of `_pose_grid`'s transform."""
    k = nz.scale * _ZOOM
    c, s = np.cos(nz.roll), np.sin(nz.roll)
    u, v = points[:, 0], points[:, 1] - _V_OFFSET
    u0 = k * (c * u - s * v) + nz.shift_u
    v0 = k * (s * u + c * v) + nz.shift_v
    return (np.stack([u0, v0], 1) + 1.0) * (size / 2.0) - 0.5


def _draw(idt: Identity, acts: np.ndarray, size: int, nz: Nuisance, rng) -> np.ndarray:
    """Paints one face back to front: background, hair and neck, skin, fringe, then the inner
    features. Each layer is an alpha blend over the ones below, so the order is part of the output.

    Args:
      idt: the subject.
      acts: float [len(ACTIONS)] action vector.
      size: output height = width in pixels.
      nz: pose, lighting and noise.
      rng: source of the pixel noise; None adds none.

    Returns:
      float32 [size, size] gray levels in [0, 1].
    """
    a = _named(acts)
    grid = _pose_grid(size, nz)
    img = _paint_background(idt, grid)
    img = _paint_hair_and_neck(img, idt, grid)
    r, cov = _face_coverage(idt, grid)
    img = _paint_skin(img, idt, grid, nz, r, cov)
    img = _paint_fringe(img, idt, grid, cov)
    f = _features(grid, cov)
    # Left side, then right (side = -1, +1); an eye, its brow and its lens rim overlap, so they
    # stay in this order.
    for side in (-1.0, 1.0):
        img = _paint_eye(img, f, idt, a, side)
        img = _paint_brow(img, f, idt, a, side)
        if idt.glasses:
            img = _paint_lens_rim(img, f, idt, side)
    if idt.glasses:
        img = _paint_glasses_bridge(img, f, idt)
    img = _paint_frown_lines(img, f, idt, a)
    img = _paint_nose(img, f, idt, a)
    img = _paint_nose_wrinkles(img, f, idt, a)
    img = _paint_mouth(img, f, idt, a)
    img = _paint_nasolabial_folds(img, f, idt, a)
    img = _paint_dimple(img, f, idt, a)
    img = _paint_chin_boss(img, f, idt, a)
    return _finish(img, nz, rng)


@dataclasses.dataclass(frozen=True)
class _Grid:
    """Every pixel's position, each [size, size]: `u0`, `v0` in the image; `u`, `v` on the head
    (the image seen through the inverse pose); `uf` the u of the inner features, which also turn
    with yaw. `edge` is the anti-aliasing width in head units."""

    u0: np.ndarray
    v0: np.ndarray
    u: np.ndarray
    v: np.ndarray
    uf: np.ndarray
    edge: float


def _pose_grid(size: int, nz: Nuisance) -> _Grid:
    """The pixel grid of a `size` x `size` image, undoing roll, scale, shift and yaw."""
    g = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    V0, U0 = np.meshgrid(g, g, indexing="ij")
    c, s = np.cos(nz.roll), np.sin(nz.roll)
    Ut, Vt = U0 - nz.shift_u, V0 - nz.shift_v
    # _ZOOM makes the face fill the frame like a face-detector crop.
    U = (c * Ut + s * Vt) / (nz.scale * _ZOOM)
    V = (-s * Ut + c * Vt) / (nz.scale * _ZOOM) + _V_OFFSET
    # Yaw: inner features slide towards the turn and narrow a little; the outline stays.
    Uf = (U - _YAW_SHIFT * nz.yaw) / (1.0 - _YAW_NARROW * abs(nz.yaw))
    edge = 3.0 / size / (nz.scale * _ZOOM)  # About 1.5 pixels.
    return _Grid(u0=U0, v0=V0, u=U, v=V, uf=Uf, edge=edge)


def _paint_background(idt: Identity, grid: _Grid) -> np.ndarray:
    """The subject's background tone with a faint gradient across the frame: [size, size]."""
    img = np.full(grid.u0.shape, idt.background, np.float32)
    return img + 0.08 * (grid.v0 * 0.5 - grid.u0 * 0.3)


def _paint_hair_and_neck(img: np.ndarray, idt: Identity, grid: _Grid) -> np.ndarray:
    """The hair mass behind the head (cut off below the ears), then the neck: [size, size]."""
    hair_sd = _ellipse_sd(
        grid.u,
        grid.v,
        0.0,
        idt.face_cy - 0.1,
        idt.face_w + idt.hair_volume,
        idt.face_h + idt.hair_volume * 0.8,
    )
    hair_mask = _soft(hair_sd, grid.edge) * np.clip((idt.face_cy + 0.15 - grid.v) / 0.1, 0, 1)
    img = _blend(img, hair_mask, idt.hair)
    neck_sd = np.maximum(np.abs(grid.u) - idt.face_w * 0.55, idt.face_cy + 0.3 - grid.v)
    return _blend(img, _soft(neck_sd, grid.edge), idt.skin * 0.82)


def _face_radius(idt: Identity, grid: _Grid) -> np.ndarray:
    """Superellipse radius of every pixel [size, size], 1 on the face outline: exponent 2.2 above
    the outline's centre, `idt.jaw` below it (a small one gives a pointed chin)."""
    dy = grid.v - idt.face_cy
    p = np.where(dy > 0, idt.jaw, 2.2)
    return (np.abs(grid.u / idt.face_w) ** p + np.abs(dy / idt.face_h) ** p) ** (1.0 / p)


def _face_coverage(idt: Identity, grid: _Grid) -> tuple[np.ndarray, np.ndarray]:
    """(superellipse radius, coverage in [0, 1]) of the face outline, each [size, size]."""
    r = _face_radius(idt, grid)
    return r, _soft((r - 1.0) * idt.face_w, grid.edge)


def _paint_skin(
    img: np.ndarray, idt: Identity, grid: _Grid, nz: Nuisance, r: np.ndarray, cov: np.ndarray
) -> np.ndarray:
    """The face's skin over its coverage `cov`, shaded from the radius `r` (both [size, size])."""
    # Rounded shading: darker towards the rim, plus a directional light.
    rim = np.sqrt(np.clip(1.0 - np.minimum(r, 1.0) ** 2, 0.0, 1.0))
    shade = 0.78 + 0.22 * rim + nz.light_u * grid.u + nz.light_v * grid.v
    return _blend(img, cov, idt.skin * shade)


def _fringe_alpha(idt: Identity, grid: _Grid, cov: np.ndarray) -> np.ndarray:
    """Opacity [size, size] of the hair over the forehead: the face's coverage `cov` above a
    hairline that curves down towards the temples."""
    hl = idt.hairline + idt.face_cy + 0.18 * (grid.u / idt.face_w) ** 2
    return cov * np.clip((hl - grid.v) / grid.edge + 0.5, 0, 1)


def _paint_fringe(img: np.ndarray, idt: Identity, grid: _Grid, cov: np.ndarray) -> np.ndarray:
    """Hair over the forehead (see `_fringe_alpha`): [size, size]."""
    return _blend(img, _fringe_alpha(idt, grid, cov), idt.hair)


@dataclasses.dataclass(frozen=True)
class _Features:
    """Where the inner features are inked: their coordinates `u` (turned with yaw) and `v`, and
    the face's coverage `cov`, each [size, size]; `edge` is the anti-aliasing width."""

    u: np.ndarray
    v: np.ndarray
    cov: np.ndarray
    edge: float


def _features(grid: _Grid, cov: np.ndarray) -> _Features:
    """The inner features' frame on `grid`, inked only where the face covers (`cov`)."""
    return _Features(u=grid.uf, v=grid.v, cov=cov, edge=grid.edge)


def _ink_alpha(f: _Features, sd: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Opacity [size, size] with which `_ink` lays a shape of signed distance `sd` on the face."""
    return strength * f.cov * _soft(sd, f.edge)


def _ink(
    img: np.ndarray, f: _Features, sd: np.ndarray, tone: float | np.ndarray, strength: float = 1.0
) -> np.ndarray:
    """Blends `tone` into `img` where the signed distance `sd` is negative, on the face only (so
    a feature never spills onto the hair or background); `strength` fades it. All [size, size]."""
    return _blend(img, _ink_alpha(f, sd, strength), tone)


@dataclasses.dataclass(frozen=True)
class _EyeShape:
    """One eye on the feature grid, each [size, size]: `du` the position across the eye (-1 and
    1 at its corners), `top` and `bot` the v of the upper and lower lid arcs, `inside` the signed
    distance of the opening between them (negative inside; it holds the white and the iris)."""

    cu: float  # u of the eye's centre.
    du: np.ndarray
    top: np.ndarray
    bot: np.ndarray
    inside: np.ndarray


def _eye_shape(f: _Features, idt: Identity, a: dict[str, float], side: float) -> _EyeShape:
    """The lid arcs and opening of the eye on `side` (-1 left, +1 right)."""
    up_h, lo_h = _lid_heights(idt, a)
    cu = side * idt.eye_sep
    du = (f.u - cu) / idt.eye_w
    prof = np.clip(1.0 - du**2, 0.0, None)
    top = idt.eye_y - up_h * prof
    bot = idt.eye_y + lo_h * prof
    inside = np.maximum(top - f.v, f.v - bot)
    inside = np.where(np.abs(du) < 1.0, inside, 1.0)
    return _EyeShape(cu=cu, du=du, top=top, bot=bot, inside=inside)


def _paint_eye(
    img: np.ndarray, f: _Features, idt: Identity, a: dict[str, float], side: float
) -> np.ndarray:
    """One eye (side = -1 left, +1 right): the white between the lid arcs, the iris, the upper
    lid line, and the lower-lid bulge of a squint or smile. [size, size]."""
    e = _eye_shape(f, idt, a, side)
    img = _ink(img, f, e.inside, 0.92 * idt.skin + 0.08)
    iris_sd = np.maximum(_ellipse_sd(f.u, f.v, e.cu, idt.eye_y, idt.eye_h, idt.eye_h), e.inside)
    img = _ink(img, f, iris_sd, idt.iris)
    lid_line = np.abs(f.v - e.top) - 0.012 - 0.01 * _pos(a["lid_raise"])
    img = _ink(img, f, np.where(np.abs(e.du) < 1.05, lid_line, 1.0), 0.25 * idt.skin)
    # Cheek raise / lower-lid bulge under a squint or smile.
    bulge = np.where(np.abs(e.du) < 0.8, np.abs(f.v - (e.bot + 0.035)) - 0.006, 1.0)
    return _ink(img, f, bulge, 0.7 * idt.skin, _pos(a["lid_tighten"]))


def _paint_brow(
    img: np.ndarray, f: _Features, idt: Identity, a: dict[str, float], side: float
) -> np.ndarray:
    """One brow, from its inner end near the nose to its outer end at the temple. [size, size]."""
    t = np.linspace(0.0, 1.0, 6)
    pts = _brow_points(idt, a, side, t)
    brow_sd = _polyline_dist(f.u, f.v, pts) - idt.brow_thick * (0.5 - 0.35 * t.mean())
    return _ink(img, f, brow_sd, idt.brow_tone)


def _paint_lens_rim(img: np.ndarray, f: _Features, idt: Identity, side: float) -> np.ndarray:
    """The ring of one spectacle lens around the eye on `side`. [size, size]."""
    cu = side * idt.eye_sep
    ring = np.abs(_ellipse_sd(f.u, f.v, cu, idt.eye_y, idt.eye_w * 1.35, idt.eye_w * 1.05))
    return _ink(img, f, ring - 0.008, 0.12)


def _paint_glasses_bridge(img: np.ndarray, f: _Features, idt: Identity) -> np.ndarray:
    """The bar joining the two lens rims across the nose. [size, size]."""
    bridge = np.array(
        [
            [-idt.eye_sep + idt.eye_w * 1.3, idt.eye_y],
            [idt.eye_sep - idt.eye_w * 1.3, idt.eye_y],
        ]
    )
    return _ink(img, f, _polyline_dist(f.u, f.v, bridge) - 0.008, 0.12)


def _paint_frown_lines(
    img: np.ndarray, f: _Features, idt: Identity, a: dict[str, float]
) -> np.ndarray:
    """Two vertical lines between the brows, as dark as the brows are lowered. [size, size]."""
    frown = min(_pos(a["brow_lower"]), 1.0)
    for side in (-1.0, 1.0):
        pts = np.array(
            [[side * 0.03, idt.eye_y - 0.02], [side * 0.045, idt.eye_y - idt.brow_gap + 0.02]]
        )
        img = _ink(img, f, _polyline_dist(f.u, f.v, pts) - 0.007, 0.6 * idt.skin, frown)
    return img


def _paint_nose(img: np.ndarray, f: _Features, idt: Identity, a: dict[str, float]) -> np.ndarray:
    """Shading down each side of the nose, then its nostril (flared by a wrinkle). [size, size]."""
    tip, nw = _nose(idt, a)
    for side in (-1.0, 1.0):
        pts = np.array([[side * 0.04, idt.eye_y + 0.03], [side * idt.nose_w * 0.9, tip - 0.02]])
        img = _ink(img, f, _polyline_dist(f.u, f.v, pts) - 0.006, 0.8 * idt.skin, 0.7)
        nostril = _ellipse_sd(f.u, f.v, side * nw * 0.6, tip, nw * 0.35, 0.016)
        img = _ink(img, f, nostril, 0.35 * idt.skin)
    return img


def _paint_nose_wrinkles(
    img: np.ndarray, f: _Features, idt: Identity, a: dict[str, float]
) -> np.ndarray:
    """Three creases across the bridge of the nose under a nose wrinkle. [size, size]."""
    wrinkle = min(_pos(a["nose_wrinkle"]), 1.0)
    for k in range(3):
        vy = idt.eye_y + 0.02 + 0.025 * k
        pts = np.array([[-0.06, vy + 0.01], [0.0, vy], [0.06, vy + 0.01]])
        img = _ink(img, f, _polyline_dist(f.u, f.v, pts) - 0.005, 0.65 * idt.skin, wrinkle)
    return img


@dataclasses.dataclass(frozen=True)
class _MouthShape:
    """The mouth on the feature grid, each [size, size]: `within` where a pixel lies between the
    corners, `up_in` and `lo_in` the v of the inner lip curves, and the signed distances
    (negative inside) of the whole lip region `lips_sd` and of the opening `opening_sd` (positive
    everywhere when the mouth is closed)."""

    within: np.ndarray
    up_in: np.ndarray
    lo_in: np.ndarray
    lips_sd: np.ndarray
    opening_sd: np.ndarray


def _mouth_shape(f: _Features, idt: Identity, a: dict[str, float]) -> _MouthShape:
    """The lip region and opening of the mouth under the actions `a` (geometry of `_mouth`)."""
    m = _mouth(idt, a)
    t = f.u / m.hw
    within = np.abs(t) < 1.0
    up_out, up_in, lo_in, lo_out = _lips(m, a, np.clip(t, -1.0, 1.0))
    lips_sd = np.where(within, np.maximum(up_out - f.v, f.v - lo_out), 1.0)
    opening_sd = np.where(within, np.maximum(up_in - f.v, f.v - lo_in), 1.0)
    opening_sd = np.maximum(opening_sd, -(lo_in - up_in) / 2 + 0.004)  # Vanishes when closed.
    return _MouthShape(within, up_in, lo_in, lips_sd, opening_sd)


def _paint_mouth(img: np.ndarray, f: _Features, idt: Identity, a: dict[str, float]) -> np.ndarray:
    """The lips, the dark opening between them (none when closed), the upper teeth in it, and the
    seam where the lips meet; corners move with the actions as in `_mouth`. [size, size]."""
    s = _mouth_shape(f, idt, a)
    img = _ink(img, f, s.lips_sd, idt.lip_tone * idt.skin)
    img = _ink(img, f, s.opening_sd, 0.08)
    teeth = min(_pos(a["corner_up"]) + _pos(a["upper_lip_raise"]) + 0.5 * _pos(a["jaw_drop"]), 1.0)
    teeth_sd = np.maximum(s.opening_sd, f.v - (s.up_in + 0.35 * (s.lo_in - s.up_in)))
    img = _ink(img, f, teeth_sd, 0.9, teeth)
    seam = np.where(s.within, np.abs(f.v - (s.up_in + s.lo_in) / 2) - 0.005, 1.0)
    return _ink(img, f, seam, 0.3 * idt.skin)


def _paint_nasolabial_folds(
    img: np.ndarray, f: _Features, idt: Identity, a: dict[str, float]
) -> np.ndarray:
    """The folds from the nostrils to the mouth corners, deepened by smiles and sneers.
    [size, size]."""
    m = _mouth(idt, a)
    tip, _ = _nose(idt, a)
    fold = min(
        _pos(a["corner_up"]) + 0.8 * _pos(a["upper_lip_raise"]) + 0.5 * _pos(a["nose_wrinkle"]),
        1.0,
    )
    for side in (-1.0, 1.0):
        cu = side * (m.hw + 0.03)
        cv = m.my + m.bend - (0.07 * a["asym"] if side > 0 else 0.0)
        pts = np.array(
            [
                [side * idt.nose_w * 1.4, tip - 0.015],
                [side * (idt.nose_w * 1.4 + m.hw + 0.06) / 2 + side * 0.02, (tip + cv) / 2],
                [cu + side * 0.015, cv + 0.02],
            ]
        )
        img = _ink(img, f, _polyline_dist(f.u, f.v, pts) - 0.005, 0.7 * idt.skin, 0.8 * fold)
    return img


def _paint_dimple(img: np.ndarray, f: _Features, idt: Identity, a: dict[str, float]) -> np.ndarray:
    """Contempt's dimple beside the raised (right) mouth corner. [size, size]."""
    m = _mouth(idt, a)
    dimple = _ellipse_sd(f.u, f.v, m.hw + 0.03, m.my + m.bend - 0.07 * a["asym"], 0.012, 0.02)
    return _ink(img, f, dimple, 0.55 * idt.skin, min(_pos(a["asym"]), 1.0))


def _paint_chin_boss(
    img: np.ndarray, f: _Features, idt: Identity, a: dict[str, float]
) -> np.ndarray:
    """The bulge outlined under the lower lip when the chin is pushed up. [size, size]."""
    m = _mouth(idt, a)
    chin = np.abs(_ellipse_sd(f.u, f.v, 0.0, m.my + 0.12, 0.07, 0.03)) - 0.004
    chin = np.where(m.my + 0.11 < f.v, chin, 1.0)
    return _ink(img, f, chin, 0.7 * idt.skin, min(_pos(a["chin_raise"]), 1.0))


def _finish(img: np.ndarray, nz: Nuisance, rng: np.random.Generator | None) -> np.ndarray:
    """Global contrast and brightness, then pixel noise when `rng` is given.

    Returns:
      float32 [size, size] clipped to [0, 1].
    """
    img = (img - 0.5) * nz.contrast + 0.5 + nz.brightness
    if rng is not None and nz.noise > 0:
        img = img + rng.normal(0.0, nz.noise, img.shape)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def sequence_intensities(length: int) -> np.ndarray:
    """Intensity ramp of a neutral-to-apex sequence: eased 0 -> 1 over `length` frames.

    Returns:
      float64 [length]; the first frame is 0 (neutral), the last 1 (apex).
    """
    if length < 2:
        raise ValueError(f"frames_per_sequence must be >= 2, got {length}.")
    x = np.linspace(0.0, 1.0, length)
    return x * x * (3.0 - 2.0 * x)


@dataclasses.dataclass(frozen=True)
class Frame:
    """One rendered frame of a sequence, as stored in the dataset."""

    image: np.ndarray  # uint8 [size, size]
    landmarks: np.ndarray  # float32 [68, 2] (x, y) pixels, see `face_landmarks`.
    label: int  # Expression class index.
    subject: int
    sequence: int  # Unique over the dataset: subject * len(EXPRESSIONS) + label.
    frame: int  # Index within the sequence (0 = neutral).
    is_peak: bool
    mask: np.ndarray  # bool [size, size]: the face region (`face_mask`).
    neutral: bool = False  # The sequence's first frame (intensity 0), not a labelled frame.
    pose: int = 0  # Yaw bin in degrees (`generate(poses=...)`); 0 for the frontal set.


def check_options(size: int, frames_per_sequence: int, label_last_frames: int) -> None:
    """Raises ValueError naming the config key when `generate` cannot honour the options."""
    if not 32 <= size <= 128:
        raise ValueError(f"model.image_size must be in [32, 128] for synthetic_faces, got {size}.")
    if not 1 <= label_last_frames <= frames_per_sequence:
        raise ValueError(
            "data.label_last_frames must be in [1, data.frames_per_sequence="
            f"{frames_per_sequence}], got {label_last_frames}."
        )


# The renderer's yaw is a turn in [-1, 1]; a yaw bin of d degrees draws yaw d / this. The
# drawing is 2-D, so the mapping is a convention that keeps +-30 degrees well inside the range.
YAW_DEGREES_PER_UNIT = 60.0


def check_poses(poses: tuple[int, ...]) -> None:
    """Raises ValueError naming `data.poses` unless the yaw bins are distinct, in +-60 degrees."""
    if len(set(poses)) != len(poses) or any(abs(p) > YAW_DEGREES_PER_UNIT for p in poses):
        raise ValueError(
            f"data.poses={','.join(map(str, poses))!r} must be distinct yaw angles in degrees "
            f"within +-{YAW_DEGREES_PER_UNIT:g}."
        )


def frame_subjects(
    num_subjects: int, label_last_frames: int, subject_offset: int = 1, num_poses: int = 1
) -> np.ndarray:
    """int [num_subjects * len(EXPRESSIONS) * num_poses * label_last_frames]: the subject of
    every labelled frame `generate` yields (neutral frames aside), in order, without rendering."""
    per_subject = len(EXPRESSIONS) * num_poses * label_last_frames
    return np.repeat(np.arange(num_subjects) + subject_offset, per_subject)


def generate(
    seed: int,
    num_subjects: int,
    size: int,
    frames_per_sequence: int = 10,
    label_last_frames: int = 3,
    nuisance: float = 0.2,
    style: float = 0.1,
    subject_offset: int = 1,
    neutral_first_frames: bool = False,
    poses: tuple[int, ...] = (),
) -> Iterator[Frame]:
    """Yields the labelled frames of every (subject, expression) sequence, CK+ style.

    Each sequence ramps from neutral to apex over `frames_per_sequence` frames; only its last
    `label_last_frames` frames are yielded (the last is the peak), preceded by its first frame
    (intensity 0, `neutral=True`) with `neutral_first_frames`. Deterministic in all arguments:
    each subject and each sequence draws from its own generator seeded by (seed, ids), so the
    labelled frames are the same with or without the neutral ones.

    `poses` (yaw bins in degrees, Multi-PIE style) renders every sequence once per bin, its head
    turned to the bin's yaw (`Frame.pose`); () keeps each sequence's own small random yaw.
    """
    check_options(size, frames_per_sequence, label_last_frames)
    check_poses(tuple(poses))
    if neutral_first_frames and label_last_frames >= frames_per_sequence:
        raise ValueError(
            f"data.neutral_first_frames needs data.label_last_frames={label_last_frames} < "
            f"data.frames_per_sequence={frames_per_sequence}: the first frame is labelled."
        )
    ramp = sequence_intensities(frames_per_sequence)
    labelled = range(frames_per_sequence - label_last_frames, frames_per_sequence)
    for s in range(num_subjects):
        subject = s + subject_offset
        identity = sample_identity(np.random.default_rng([seed, 0, s]), style)
        for k in range(len(EXPRESSIONS)):
            for p, pose in enumerate(poses or (None,)):
                # The frontal set keeps its seeds; each pose bin gets its own.
                ids = [s, k] if pose is None else [s, k, 0xB1, p]
                base = sample_nuisance(np.random.default_rng([seed, 1, *ids]), nuisance)
                if pose is not None:
                    base = dataclasses.replace(base, yaw=pose / YAW_DEGREES_PER_UNIT)
                sequence = subject * len(EXPRESSIONS) + k
                if poses:
                    sequence = sequence * len(poses) + p
                for f in ([0] if neutral_first_frames else []) + list(labelled):
                    frame_rng = np.random.default_rng([seed, 2, *ids, f])
                    nz = jitter_nuisance(base, frame_rng, nuisance)
                    img = render_face(identity, k, ramp[f], size, frame_rng, nz)
                    yield Frame(
                        image=np.round(img * 255.0).astype(np.uint8),
                        landmarks=face_landmarks(identity, k, ramp[f], size, nz),
                        label=k,
                        subject=subject,
                        sequence=sequence,
                        frame=f,
                        is_peak=f == frames_per_sequence - 1,
                        mask=face_mask(identity, size, nz),
                        neutral=f not in labelled,
                        pose=0 if pose is None else int(pose),
                    )
