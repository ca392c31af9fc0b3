"""Procedural demo data: two-agent interaction clips, rendered on the spot, judged by simulated observers.

The embedded demo (`python -m jaxbgs.train --exp demo`) must run on a fresh CPU machine with no
download, so it makes its own stimuli and its own "human" judgments:

- every clip has latent **social** variables (interaction type: chase, approach, avoid, mirror,
  ignore; approach/avoidance, synchrony, energy, facing) and **nuisance** variables (layout: where
  the pair starts and which way its axis points; appearance: agent colours and shapes, background
  colour and texture, agent size, global brightness);
- `trajectories` turns social + layout variables into two agents' positions and headings,
  `render` draws them (appearance variables only change how they look, never where they go);
- observers answer a set-cover triplet design (App. E, `greedy_triplet_design`) from the social
  variables alone (`social_embedding`), through Luce-choice noise (`answer_trials`) whose temperature
  puts the split-half ceiling in the range of the human release (test R^2 0.21, train 0.25);
- `write_release` writes the released directory format, so `load_human_data` and every analysis
  read the demo exactly as they read the human data, plus `clips.npy` and `latents.json`.

A model that picks up the social variables from motion can reach the ceiling; one that encodes
colours, shapes and backgrounds cannot (`nuisance_embedding` is the control for that).
Coordinates are in the unit square, x to the right and y down; pixel (r, c) is centred at
((c + 0.5) / size, (r + 0.5) / size).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from pathlib import Path

import numpy as np

from jaxbgs.data.design import greedy_triplet_design
from jaxbgs.data.judgments import Trials
from jaxbgs.data.synthetic import answer_trials
from jaxbgs.files import atomic_path

__all__ = [
    "BACKGROUND_COLORS",
    "AGENT_COLORS",
    "INTERACTIONS",
    "SHAPES",
    "TEXTURES",
    "DemoData",
    "SceneLatents",
    "captions",
    "make_demo",
    "nuisance_embedding",
    "read_latents",
    "render",
    "sample_latents",
    "social_embedding",
    "trajectories",
    "write_release",
]

INTERACTIONS = ("chase", "approach", "avoid", "mirror", "ignore")
SHAPES = ("circle", "square", "triangle")
TEXTURES = ("plain", "striped", "checkered", "dotted")
AGENT_COLORS = {
    "red": (0.90, 0.15, 0.15),
    "green": (0.20, 0.80, 0.25),
    "blue": (0.25, 0.45, 0.95),
    "yellow": (0.95, 0.85, 0.20),
    "purple": (0.65, 0.30, 0.85),
    "orange": (0.95, 0.55, 0.10),
    "white": (0.95, 0.95, 0.95),
    "cyan": (0.20, 0.85, 0.90),
}
BACKGROUND_COLORS = {
    "black": (0.05, 0.05, 0.05),
    "grey": (0.35, 0.35, 0.35),
    "navy": (0.08, 0.10, 0.30),
    "brown": (0.30, 0.20, 0.10),
    "olive": (0.25, 0.30, 0.10),
    "teal": (0.05, 0.25, 0.25),
    "maroon": (0.30, 0.05, 0.10),
    "slate": (0.20, 0.25, 0.30),
}
_AGENT_RGB = np.array(list(AGENT_COLORS.values()), dtype=np.float32)
_BACKGROUND_RGB = np.array(list(BACKGROUND_COLORS.values()), dtype=np.float32)
_NOSE_RGB = np.array([0.05, 0.05, 0.05], dtype=np.float32)

RADIUS = 0.1  # agent radius at size 1, in canvas widths
MARGIN = 0.1  # agent centres are kept in [MARGIN, 1 - MARGIN]
# Weights of the social axes in the observers' similarity space (the interaction type dominates).
SOCIAL_WEIGHTS = {"interaction": 1.0, "approach": 0.7, "synchrony": 0.5, "energy": 0.7, "facing": 0.5}
SOCIAL_FIELDS = ("interaction", "approach", "synchrony", "energy", "facing")
LAYOUT_FIELDS = ("center", "axis_angle", "distance", "phase", "spin", "wander")
APPEARANCE_FIELDS = (
    "color_a",
    "color_b",
    "shape_a",
    "shape_b",
    "background",
    "texture",
    "texture_angle",
    "texture_freq",
    "scale",
    "brightness",
)
_INT_FIELDS = ("interaction", "color_a", "color_b", "shape_a", "shape_b", "background", "texture")
_SHAPES = {"center": (2,), "wander": (2, 2, 2)}  # trailing shapes; every other field is (n,)


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: comparing array fields with == is ambiguous
class SceneLatents:
    """Latent variables of n clips, one array per variable (first axis = clip); arrays are read-only.

    Social (what the observers judge): `interaction` index into INTERACTIONS; `approach` in [-1, 1]
    (> 0 the agents end closer, < 0 farther apart); `synchrony` in [0, 1] (phase locking of the
    agents' bobbing: 1 in phase, 0 in antiphase); `energy` in [0, 1] (speed, bobbing amplitude and
    rate); `facing` in [-1, 1] (1 each agent faces the other, -1 faces away, 0 sideways).
    Layout (nuisance that moves the agents without changing the interaction): `center` (n, 2),
    `axis_angle` of the line from B to A, initial `distance`, bobbing `phase`, `spin` (+-1, turning
    direction of chases, dances and of the facing offset), `wander` (n, agent, xy, harmonic) phases
    of the independent walks of "ignore".
    Appearance (nuisance that changes pixels only): agent colours (AGENT_COLORS) and shapes
    (SHAPES), `background` colour (BACKGROUND_COLORS), `texture` (TEXTURES) with its angle and
    frequency (cycles per frame width), agent `scale`, global `brightness`.
    """

    interaction: np.ndarray
    approach: np.ndarray
    synchrony: np.ndarray
    energy: np.ndarray
    facing: np.ndarray
    center: np.ndarray
    axis_angle: np.ndarray
    distance: np.ndarray
    phase: np.ndarray
    spin: np.ndarray
    wander: np.ndarray
    color_a: np.ndarray
    color_b: np.ndarray
    shape_a: np.ndarray
    shape_b: np.ndarray
    background: np.ndarray
    texture: np.ndarray
    texture_angle: np.ndarray
    texture_freq: np.ndarray
    scale: np.ndarray
    brightness: np.ndarray

    def __post_init__(self) -> None:
        n = None
        for f in dataclasses.fields(self):
            dtype = np.int64 if f.name in _INT_FIELDS else np.float64
            x = np.array(getattr(self, f.name), dtype=dtype)
            trailing = _SHAPES.get(f.name, ())
            if x.ndim != 1 + len(trailing) or x.shape[1:] != trailing:
                raise ValueError(
                    f"{f.name} must have shape (n, {', '.join(map(str, trailing))}) (got {x.shape})"
                )
            if n is None:
                n = x.shape[0]
            elif x.shape[0] != n:
                raise ValueError(f"{f.name} has {x.shape[0]} clips where {SOCIAL_FIELDS[0]} has {n}")
            x.setflags(write=False)
            object.__setattr__(self, f.name, x)
        bounds = {
            "interaction": len(INTERACTIONS),
            "color_a": len(AGENT_COLORS),
            "color_b": len(AGENT_COLORS),
            "shape_a": len(SHAPES),
            "shape_b": len(SHAPES),
            "background": len(BACKGROUND_COLORS),
            "texture": len(TEXTURES),
        }
        for name, k in bounds.items():
            x = getattr(self, name)
            if ((x < 0) | (x >= k)).any():
                raise ValueError(f"{name} must be an index in [0, {k}) (got {x[(x < 0) | (x >= k)][:3]})")

    def __len__(self) -> int:
        return len(self.interaction)

    def __getitem__(self, index) -> SceneLatents:
        """The latents of a subset of clips (an index array, a slice or a boolean mask)."""
        if isinstance(index, int | np.integer):
            index = [index]
        return SceneLatents(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})

    def replace(self, **changes) -> SceneLatents:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON-ready: every variable as nested lists, plus the vocabularies its indices refer to."""
        out = {f.name: getattr(self, f.name).tolist() for f in dataclasses.fields(self)}
        out["vocabulary"] = {
            "interaction": list(INTERACTIONS),
            "shape": list(SHAPES),
            "texture": list(TEXTURES),
            "agent_color": list(AGENT_COLORS),
            "background": list(BACKGROUND_COLORS),
        }
        return out

    @classmethod
    def from_dict(cls, d: dict) -> SceneLatents:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


def sample_latents(n: int, rng: np.random.Generator | int = 0) -> SceneLatents:
    """Draw n scenes. Interaction types are balanced (each type n // 5 or n // 5 + 1 times).

    The continuous social variables depend on the type the way the type's name says (an approach
    closes distance, a mirror dance is synchronous, ...), with ranges wide enough that they still
    vary within a type and overlap across types.
    """
    rng = np.random.default_rng(rng)
    k = len(INTERACTIONS)
    kind = rng.permutation(np.arange(n) % k)
    u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    # Per-type ranges (chase, approach, avoid, mirror, ignore), low and high.
    approach = np.select(
        [kind == i for i in range(k)],
        [u(0.0, 0.6), u(0.4, 1.0), u(-1.0, -0.4), u(-0.3, 0.3), u(-0.3, 0.3)],
    )
    synchrony = np.select(
        [kind == i for i in range(k)], [u(0.2, 0.9), u(0.0, 1.0), u(0.0, 1.0), u(0.6, 1.0), u(0.0, 0.4)]
    )
    energy = np.select(
        [kind == i for i in range(k)], [u(0.4, 1.0), u(0.0, 1.0), u(0.0, 1.0), u(0.0, 1.0), u(0.0, 0.7)]
    )
    color_a = rng.integers(0, len(AGENT_COLORS), n)
    color_b = (color_a + rng.integers(1, len(AGENT_COLORS), n)) % len(AGENT_COLORS)  # never the same
    return SceneLatents(
        interaction=kind,
        approach=approach,
        synchrony=synchrony,
        energy=energy,
        facing=rng.uniform(-1.0, 1.0, n),
        center=rng.uniform(0.45, 0.55, (n, 2)),
        axis_angle=rng.uniform(0.0, 2 * np.pi, n),
        distance=rng.uniform(0.25, 0.4, n),
        phase=rng.uniform(0.0, 2 * np.pi, n),
        spin=rng.choice([-1.0, 1.0], n),
        wander=rng.uniform(0.0, 2 * np.pi, (n, 2, 2, 2)),
        color_a=color_a,
        color_b=color_b,
        shape_a=rng.integers(0, len(SHAPES), n),
        shape_b=rng.integers(0, len(SHAPES), n),
        background=rng.integers(0, len(BACKGROUND_COLORS), n),
        texture=rng.integers(0, len(TEXTURES), n),
        texture_angle=rng.uniform(0.0, np.pi, n),
        texture_freq=rng.uniform(2.5, 5.0, n),
        scale=rng.uniform(0.85, 1.15, n),
        brightness=rng.uniform(0.75, 1.2, n),
    )


def trajectories(latents: SceneLatents, frames: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Agent centres (n, frames, 2 agents, xy) and headings (n, frames, 2) in radians.

    A function of the social and layout variables only. Per type: chase = the pair runs round a
    circle, A behind B; approach / avoid = the pair stands on a fixed axis and the distance shrinks
    / grows; mirror = the pair turns about its centre, point-symmetric; ignore = independent
    wandering. In every type the distance scales by 1 - 0.6 * approach * progress, where progress
    runs 0 -> 1 over the clip, more abruptly for high energy: approaching agents slow down as they
    arrive, avoiding ones speed up as they flee; both agents bob across their axis
    (amplitude and rate grow with energy, phase offset (1 - synchrony) * pi); each faces the other
    rotated by (1 - facing) * pi / 2.
    """
    z = latents
    t = np.linspace(0.0, 1.0, frames)[None, :]  # (1, T)
    col = lambda x: np.asarray(x, dtype=np.float64)[:, None]  # noqa: E731
    kind, a, s, e = z.interaction[:, None], col(z.approach), col(z.synchrony), col(z.energy)
    spin, d0, theta0 = col(z.spin), col(z.distance), col(z.axis_angle)
    cx, cy = col(z.center[:, 0]), col(z.center[:, 1])
    k = 1.0 + 3.0 * e
    progress = np.where(a >= 0, 1.0 - (1.0 - t) ** k, t**k)  # approachers arrive, avoiders flee
    dist = d0 * (1.0 - 0.6 * a * progress)

    # Chase runs round a circle and a mirror dance turns its axis; the other types hold the layout's axis.
    # Chase: both on a circle of radius R around the centre, B ahead of A by the arc `gap`.
    R = 0.28
    gap = 2.0 * np.arcsin(np.clip(dist / (2 * R), 0.0, 1.0))
    lead = theta0 + spin * (0.6 + 1.6 * e) * np.pi * t  # B's angle on the circle
    chase = kind == 0
    ax_c, ay_c = cx + R * np.cos(lead - spin * gap), cy + R * np.sin(lead - spin * gap)  # A (chaser)
    bx_c, by_c = cx + R * np.cos(lead), cy + R * np.sin(lead)  # B (chased)
    # Mirror: the axis turns; the distance also breathes a little.
    mirror = kind == 3
    theta = np.where(mirror, theta0 + spin * (0.5 + 1.5 * e) * np.pi * t, theta0)  # axis from B to A
    dist = np.where(mirror, dist * (1.0 + 0.15 * np.sin(2 * np.pi * t + col(z.phase))), dist)
    ux, uy = np.cos(theta), np.sin(theta)
    ax, ay = cx + 0.5 * dist * ux, cy + 0.5 * dist * uy
    bx, by = cx - 0.5 * dist * ux, cy - 0.5 * dist * uy
    # Ignore: each agent wanders on its own (two harmonics per coordinate, random phases).
    ignore = kind == 4
    h = np.arange(1, 3)  # harmonics: 0.5 and 1 cycle per clip
    w = z.wander[:, None]  # (n, 1, agent, xy, harmonic)
    arg = np.pi * h * t[:, :, None, None, None] + w
    walk = (0.03 + 0.05 * e)[:, :, None, None] * (np.sin(arg) - np.sin(w)).sum(-1)  # (n, T, agent, xy)
    ax, ay = np.where(ignore, ax + walk[..., 0, 0], ax), np.where(ignore, ay + walk[..., 0, 1], ay)
    bx, by = np.where(ignore, bx + walk[..., 1, 0], bx), np.where(ignore, by + walk[..., 1, 1], by)
    ax, ay = np.where(chase, ax_c, ax), np.where(chase, ay_c, ay)
    bx, by = np.where(chase, bx_c, bx), np.where(chase, by_c, by)

    # Bobbing across the current axis: amplitude and rate from energy, phase offset from synchrony.
    axis = np.arctan2(ay - by, ax - bx)
    nx, ny = -np.sin(axis), np.cos(axis)
    bob_amp, bob_rate = 0.015 + 0.03 * e, 1.0 + 1.5 * e
    bob_a = bob_amp * np.sin(2 * np.pi * bob_rate * t + col(z.phase))
    bob_b = bob_amp * np.sin(2 * np.pi * bob_rate * t + col(z.phase) + (1.0 - s) * np.pi)
    ax, ay, bx, by = ax + bob_a * nx, ay + bob_a * ny, bx + bob_b * nx, by + bob_b * ny

    pos = np.stack([np.stack([ax, ay], -1), np.stack([bx, by], -1)], axis=2)  # (n, T, 2, 2)
    pos = np.clip(pos, MARGIN, 1.0 - MARGIN)
    to_other = pos[:, :, ::-1] - pos  # A -> B and B -> A
    toward = np.arctan2(to_other[..., 1], to_other[..., 0])  # (n, T, 2)
    heading = toward + (spin * (1.0 - col(z.facing)) * np.pi / 2)[:, :, None]
    return pos, heading


def _texture(z: SceneLatents, size: int) -> np.ndarray:
    """(n, H, W) background pattern in [-1, 1]; 0 for plain."""
    c = (np.arange(size) + 0.5) / size
    x, y = c[None, None, :], c[None, :, None]
    ang, f = z.texture_angle[:, None, None], z.texture_freq[:, None, None]
    u = 2 * np.pi * f * (x * np.cos(ang) + y * np.sin(ang))
    v = 2 * np.pi * f * (-x * np.sin(ang) + y * np.cos(ang))
    stripes = np.tanh(3.0 * np.sin(u))
    checks = np.tanh(3.0 * np.sin(u)) * np.tanh(3.0 * np.sin(v))
    dots = np.clip(4.0 * (np.cos(u) * np.cos(v) - 0.5), -1.0, 1.0)
    kind = z.texture[:, None, None]
    return np.select([kind == 1, kind == 2, kind == 3], [stripes, checks, dots], 0.0)


def _sdf(dx: np.ndarray, dy: np.ndarray, heading: np.ndarray, shape: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Signed distance (canvas units, < 0 inside) to an agent of `shape` and radius `r` at the origin."""
    cos, sin = np.cos(heading), np.sin(heading)
    x, y = dx * cos + dy * sin, -dx * sin + dy * cos  # agent frame: x along the heading
    circle = np.sqrt(dx * dx + dy * dy) - r
    square = np.maximum(np.abs(x), np.abs(y)) - 0.85 * r
    # Equilateral triangle with a vertex along the heading: max of the three edge half-planes.
    inr = 0.62 * r
    c60, s60 = 0.5, np.sqrt(3.0) / 2
    tri = np.maximum(np.maximum(-x, c60 * x + s60 * y), c60 * x - s60 * y) - inr
    return np.where(shape == 0, circle, np.where(shape == 1, square, tri))


def render(latents: SceneLatents, *, frames: int = 8, size: int = 32, chunk: int = 64) -> np.ndarray:
    """Clips (n, frames, size, size, 3) uint8: two agents with a dark "nose" dot on a textured background.

    Vectorised over clips, frames and pixels; `chunk` clips at a time bound the memory (about
    chunk * frames * size^2 * 100 bytes of float32 temporaries).
    """
    if frames < 2 or size < 8:
        raise ValueError(f"need frames >= 2 and size >= 8 (got frames={frames}, size={size})")
    n = len(latents)
    out = np.empty((n, frames, size, size, 3), dtype=np.uint8)
    pos_all, heading_all = trajectories(latents, frames)
    c = ((np.arange(size) + 0.5) / size).astype(np.float32)
    gx, gy = c[None, None, None, :], c[None, None, :, None]  # broadcast to (m, T, H, W)
    for lo in range(0, n, chunk):
        sl = slice(lo, min(lo + chunk, n))
        z = latents[np.arange(n)[sl]]
        pos = pos_all[sl].astype(np.float32)
        heading = heading_all[sl].astype(np.float32)
        bg = _BACKGROUND_RGB[z.background][:, None, None, :] + 0.12 * _texture(z, size)[..., None]
        img = np.broadcast_to(bg[:, None], (len(z), frames, size, size, 3)).astype(np.float32)
        r = (RADIUS * z.scale).astype(np.float32)[:, None, None, None]
        for k, (shape, color) in enumerate(((z.shape_a, z.color_a), (z.shape_b, z.color_b))):
            px, py = pos[:, :, k, 0, None, None], pos[:, :, k, 1, None, None]
            h = heading[:, :, k, None, None]
            sdf = _sdf(gx - px, gy - py, h, shape[:, None, None, None], r)
            alpha = np.clip(0.5 - sdf * size, 0.0, 1.0)[..., None]  # one-pixel antialiased edge
            img = img * (1 - alpha) + _AGENT_RGB[color][:, None, None, None, :] * alpha
            nx = px + 0.55 * r * np.cos(h)
            ny = py + 0.55 * r * np.sin(h)
            nose = np.sqrt((gx - nx) ** 2 + (gy - ny) ** 2) - 0.38 * r
            alpha = np.clip(0.5 - nose * size, 0.0, 1.0)[..., None]
            img = img * (1 - alpha) + _NOSE_RGB * alpha
        img = img * z.brightness.astype(np.float32)[:, None, None, None, None]
        out[sl] = np.round(np.clip(img, 0.0, 1.0) * 255).astype(np.uint8)
    return out


def _centered_one_hot(index: np.ndarray, k: int) -> np.ndarray:
    return np.eye(k)[index] - 1.0 / k


def social_embedding(latents: SceneLatents) -> np.ndarray:
    """(n, 9) the observers' similarity space: weighted centred one-hot type + the four scalars in [-1, 1]."""
    z, w = latents, SOCIAL_WEIGHTS
    return np.concatenate(
        [
            w["interaction"] * _centered_one_hot(z.interaction, len(INTERACTIONS)),
            w["approach"] * z.approach[:, None],
            w["synchrony"] * (2 * z.synchrony[:, None] - 1),
            w["energy"] * (2 * z.energy[:, None] - 1),
            w["facing"] * z.facing[:, None],
        ],
        axis=1,
    )


# The demo's "ratings" for the probes: the continuous social scales the observers judge, and
# continuous nuisance variables (appearance, layout) as controls that fine-tuning should not favour.
RATING_SOCIAL = ("approach", "synchrony", "energy", "facing")
RATING_NUISANCE = ("brightness", "scale", "distance", "texture_freq")


def latent_ratings(latents: SceneLatents) -> tuple[tuple[str, ...], np.ndarray]:
    """(names, (n, k) float32): what the human data's annotations.csv is to a social-affective probe."""
    names = RATING_SOCIAL + RATING_NUISANCE
    return names, np.stack([getattr(latents, n) for n in names], axis=1).astype(np.float32)


def nuisance_embedding(latents: SceneLatents) -> np.ndarray:
    """(n, 36) the appearance variables (centred one-hots and centred scalars): what observers ignore."""
    z = latents
    return np.concatenate(
        [
            _centered_one_hot(z.color_a, len(AGENT_COLORS)),
            _centered_one_hot(z.color_b, len(AGENT_COLORS)),
            _centered_one_hot(z.shape_a, len(SHAPES)),
            _centered_one_hot(z.shape_b, len(SHAPES)),
            _centered_one_hot(z.background, len(BACKGROUND_COLORS)),
            _centered_one_hot(z.texture, len(TEXTURES)),
            (z.scale[:, None] - 1.0) / 0.15,
            (z.brightness[:, None] - 0.975) / 0.225,
        ],
        axis=1,
    )


_VERBS = {
    "chase": "{a} chases {b}",
    "approach": "{a} and {b} walk up to each other",
    "avoid": "{a} and {b} move away from each other",
    "mirror": "{a} and {b} dance in mirror image",
    "ignore": "{a} and {b} wander about ignoring each other",
}


def captions(latents: SceneLatents) -> list[tuple[str, str]]:
    """Two template sentences per clip: a full description and a short one (as the release has several)."""
    names_c, names_b = list(AGENT_COLORS), list(BACKGROUND_COLORS)
    out = []
    for i in range(len(latents)):
        z = latents[[i]]
        a = f"a {names_c[z.color_a[0]]} {SHAPES[z.shape_a[0]]}"
        b = f"a {names_c[z.color_b[0]]} {SHAPES[z.shape_b[0]]}"
        kind = INTERACTIONS[z.interaction[0]]
        e, f, s = z.energy[0], z.facing[0], z.synchrony[0]
        speed = "slowly" if e < 1 / 3 else "steadily" if e < 2 / 3 else "quickly"
        facing = (
            "facing each other"
            if f > 1 / 3
            else "facing away from each other"
            if f < -1 / 3
            else "looking sideways"
        )
        step = " in step" if s > 2 / 3 else " out of step" if s < 1 / 3 else ""
        ground = f"a {TEXTURES[z.texture[0]]} {names_b[z.background[0]]} background"
        full = f"{_VERBS[kind].format(a=a, b=b)} {speed}{step}, {facing}, on {ground}"
        short = f"two shapes, {kind}, {speed}, on {ground}"
        out.append((full, short))
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class DemoData:
    """A complete demo data set: clips, their latents and a released-format set of judgments."""

    clips: np.ndarray  # (n, frames, size, size, 3) uint8
    latents: SceneLatents
    video_names: tuple[str, ...]  # index = video id
    train_ids: np.ndarray  # sorted
    test_ids: np.ndarray  # sorted
    train: Trials
    test: Trials
    captions: tuple[tuple[str, ...], ...]  # per video id
    temperature: float
    seed: int

    def split(self, name: str) -> tuple[np.ndarray, Trials]:
        if name not in ("train", "test"):
            raise ValueError(f"unknown split {name!r}: use 'train' or 'test'")
        return (self.train_ids, self.train) if name == "train" else (self.test_ids, self.test)

    @property
    def social(self) -> np.ndarray:
        """The observers' similarity space (the ideal model), (n, d) in video-id order."""
        return social_embedding(self.latents)

    def judge(
        self, ids: np.ndarray, repeats: int, split: str, *, seed, trials_per_participant: int = 100
    ) -> Trials:
        """A further session: `repeats` set covers of the pairs of `ids`, answered by the same
        simulated observers (e.g. a validation design on videos held out of training)."""
        rng, ids = np.random.default_rng(seed), np.asarray(ids)
        return _judge(self.social, ids, repeats, split, self.temperature, trials_per_participant, rng)


def _design(ids: np.ndarray, repeats: int, rng: np.random.Generator) -> np.ndarray:
    # pool_size 2000: about 3x faster than the default on 200 items for 1.6% more triplets.
    rounds = [
        ids[greedy_triplet_design(len(ids), 1, seed=int(rng.integers(2**31)), pool_size=2000).triplets]
        for _ in range(repeats)
    ]
    return np.concatenate(rounds)


def _answer(
    emb: np.ndarray, items: np.ndarray, split: str, temperature: float, per_participant: int, rng
) -> Trials:
    odd = answer_trials(emb, items, temperature=temperature, rng=rng)
    # Response times: slower when the kept pair is barely more similar than the others (1-6 s).
    z = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    a, b, c = (z[items[:, q]] for q in range(3))
    sims = np.sort(np.stack([(b * c).sum(1), (a * c).sum(1), (a * b).sum(1)], 1), axis=1)
    margin = sims[:, 2] - sims[:, 1]
    rt = np.clip(1.0 + 2.5 * np.exp(-3.0 * margin) * rng.lognormal(0.0, 0.3, len(items)), 1.0, 6.0)
    who = np.array([f"{split}-observer-{t // per_participant:03d}" for t in range(len(items))], dtype=object)
    return Trials(items, odd, who, np.round(rt, 3), source=f"<procedural demo, {split}>")


def _judge(emb, ids, repeats: int, split: str, temperature: float, per_participant: int, rng) -> Trials:
    return _answer(emb, _design(ids, repeats, rng), split, temperature, per_participant, rng)


def make_demo(
    n_videos: int = 240,
    n_test: int = 48,
    *,
    frames: int = 8,
    size: int = 32,
    seed: int = 0,
    temperature: float = 0.3,
    repeats: int | tuple[int, int] = 3,
    trials_per_participant: int = 100,
) -> DemoData:
    """Render `n_videos` clips and have simulated observers judge a set-cover design on each split.

    Train triplets use train videos only and test triplets test videos only (stimulus-disjoint, as
    in the release); each split gets `repeats` independent greedy covers (an int for both, or
    (train, test)), so every pair is seen about that many times. With the defaults, the split-half
    ceiling R^2 is in the human range (release: test 0.21, train 0.25; see tests/data/test_procedural.py).
    Deterministic for a given seed.
    """
    if n_test < 3 or n_videos - n_test < 3:
        raise ValueError(f"each split needs >= 3 videos (got {n_videos - n_test} train, {n_test} test)")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (got {temperature})")
    r_train, r_test = (repeats, repeats) if isinstance(repeats, int) else repeats
    rng = np.random.default_rng(seed)
    latents = sample_latents(n_videos, rng)
    clips = render(latents, frames=frames, size=size)
    perm = rng.permutation(n_videos)
    test_ids, train_ids = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    emb = social_embedding(latents)
    train = _judge(emb, train_ids, r_train, "train", temperature, trials_per_participant, rng)
    test = _judge(emb, test_ids, r_test, "test", temperature, trials_per_participant, rng)
    return DemoData(
        clips=clips,
        latents=latents,
        video_names=tuple(f"demo_{i:04d}.mp4" for i in range(n_videos)),
        train_ids=train_ids,
        test_ids=test_ids,
        train=train,
        test=test,
        captions=tuple(captions(latents)),
        temperature=float(temperature),
        seed=int(seed),
    )


def _csv(rows: list[list]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def write_release(demo: DemoData, out: str | os.PathLike) -> Path:
    """Write the released directory format (atomically) plus `clips.npy` and `latents.json`.

    Files: video_mapping.csv, train.csv, test.csv, train_triplets.csv, test_triplets.csv,
    all_triplets.csv, captions.csv (as `load_human_data` reads them), clips.npy (uint8, row = video
    id), latents.json (`SceneLatents.to_dict()` plus the seed, temperature and social embedding).
    """
    names = demo.video_names
    out = Path(out)
    with atomic_path(out, directory=True) as tmp:
        (tmp / "video_mapping.csv").write_text(_csv([["index", "video_name"], *enumerate(names)]))
        (tmp / "train.csv").write_text(_csv([["video_name"], *([names[i]] for i in demo.train_ids)]))
        (tmp / "test.csv").write_text(
            _csv([["index", "video_name"], *([i, names[i]] for i in demo.test_ids)])
        )
        all_rows = [["participation", "stim1_name", "stim2_name", "stim3_name", "choice", "response_time"]]
        for split in ("train", "test"):
            t = demo.split(split)[1]
            rows = [
                [p, *map(int, items), int(o), f"{rt:.3f}"]
                for items, o, p, rt in zip(t.items, t.odd, t.participant, t.response_time, strict=True)
            ]
            all_rows += rows
            header = ["triplet_id", *all_rows[0]]
            (tmp / f"{split}_triplets.csv").write_text(_csv([header, *([i, *r] for i, r in enumerate(rows))]))
        (tmp / "all_triplets.csv").write_text(_csv(all_rows))
        caps = [["video_name", "caption_index", "caption"]]
        caps += [[names[i], j + 1, c] for i, cs in enumerate(demo.captions) for j, c in enumerate(cs)]
        (tmp / "captions.csv").write_text(_csv(caps))
        np.save(tmp / "clips.npy", demo.clips)
        meta = demo.latents.to_dict() | {
            "seed": demo.seed,
            "temperature": demo.temperature,
            "social_embedding": social_embedding(demo.latents).tolist(),
        }
        (tmp / "latents.json").write_text(json.dumps(meta))
    return out


def read_latents(path: str | os.PathLike) -> SceneLatents:
    """The latents of a written demo (`latents.json`, or the directory holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "latents.json"
    return SceneLatents.from_dict(json.loads(path.read_text()))
