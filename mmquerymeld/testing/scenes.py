"""Scene rendering: textured stuff bands and coloured, occluding shapes, with their masks."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import cv2
import numpy as np

from .world_classes import COLORS, STUFF_CLASSES, THING_CLASSES
from .world_styles import SceneStyle, blob_layout, thing_diameter


@dataclass
class Thing:
    """One visible shape: class index into THING_CLASSES, colour name, visible mask [H, W] bool."""
    cls: int
    color: str
    mask: np.ndarray


@dataclass
class Scene:
    """A rendered scene: RGB image [H, W, 3] uint8, stuff index map [H, W], things in draw order."""
    image: np.ndarray
    stuff_map: np.ndarray
    things: List[Thing] = field(default_factory=list)

    def semantic_map(self) -> np.ndarray:
        """Class index map over SEMANTIC_CLASSES, ``[H, W]`` int64."""
        sem = self.stuff_map.astype(np.int64) + len(THING_CLASSES)
        for t in self.things:
            sem[t.mask] = t.cls
        return sem

    def stuff_masks(self) -> Dict[int, np.ndarray]:
        """Visible stuff region per stuff class index (things removed), empty ones dropped."""
        covered = np.zeros(self.stuff_map.shape, dtype=bool)
        for t in self.things:
            covered |= t.mask
        out = {}
        for s in np.unique(self.stuff_map):
            m = (self.stuff_map == s) & ~covered
            if m.any():
                out[int(s)] = m
        return out


def _texture(kind: str, h: int, w: int, rng: np.random.Generator,
             gain: float = 1.0) -> np.ndarray:
    """A textured RGB patch ``[h, w, 3]`` float32 for one stuff class; ``gain`` scales its
    deviation from the mean colour."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    noise = rng.normal(0, 1, (h, w, 1)).astype(np.float32)
    if kind == 'sky':
        t = (yy / max(h - 1, 1))[..., None]
        img = (1 - t) * np.array([110, 170, 235]) + t * np.array([200, 225, 250]) + 4 * noise
    elif kind == 'grass':
        streak = np.sin(xx * rng.uniform(1.5, 2.5) + rng.uniform(0, 6))[..., None]
        img = np.array([55, 135, 45]) + 18 * streak + 14 * noise
    elif kind == 'water':
        wave = np.sin(yy * rng.uniform(0.6, 0.9) + 0.3 * np.sin(xx * 0.2))[..., None]
        img = np.array([35, 85, 160]) + 25 * wave + 6 * noise
    elif kind == 'sand':
        img = np.array([210, 185, 130]) + 22 * noise
    elif kind == 'wall':
        brick_h, brick_w = 8, 16
        row = (yy // brick_h).astype(int)
        shift = (row % 2) * (brick_w // 2)
        mortar = ((yy % brick_h) < 1.5) | (((xx + shift) % brick_w) < 1.5)
        img = np.where(mortar[..., None], np.array([170, 170, 165]), np.array([150, 65, 55]))
        img = img + 6 * noise
    else:
        raise ValueError(f'unknown stuff texture {kind!r}')
    if gain != 1.0:
        mean = img.reshape(-1, 3).mean(axis=0)
        img = mean + gain * (img - mean)
    return np.clip(img, 0, 255).astype(np.float32)


def _shape_mask(cls_name: str, cx: float, cy: float, size: float, angle: float, h: int,
                w: int) -> np.ndarray:
    """Rasterise one shape centred at (cx, cy) with diameter ``size``; bool ``[h, w]``."""
    canvas = np.zeros((h, w), dtype=np.uint8)
    r = size / 2.0
    if cls_name == 'circle':
        cv2.circle(canvas, (int(round(cx)), int(round(cy))), max(int(round(r)), 2), 1, -1)
        return canvas.astype(bool)
    if cls_name == 'square':
        pts = np.array([[-r, -r], [r, -r], [r, r], [-r, r]]) * 0.85
    elif cls_name == 'triangle':
        pts = np.array([[0, -r], [r * 0.95, r * 0.75], [-r * 0.95, r * 0.75]])
    elif cls_name == 'star':
        k = np.arange(10)
        rad = np.where(k % 2 == 0, r, r * 0.45)
        ang = k * np.pi / 5 - np.pi / 2
        pts = np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
    elif cls_name == 'cross':
        a, b = r, r * 0.33
        pts = np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a],
                        [-b, b], [-a, b], [-a, -b], [-b, -b]])
    else:
        raise ValueError(f'unknown shape {cls_name!r}')
    c, s = np.cos(angle), np.sin(angle)
    pts = pts @ np.array([[c, s], [-s, c]]) + np.array([cx, cy])
    cv2.fillPoly(canvas, [np.round(pts).astype(np.int32)], 1)
    return canvas.astype(bool)


def _stuff_layout(rng: np.random.Generator, size: int, max_bands: int = 3) -> np.ndarray:
    """Stuff index map ``[size, size]``: 2-3 wavy bands of distinct stuff classes."""
    k = int(rng.integers(2, max_bands + 1))
    classes = rng.choice(len(STUFF_CLASSES), size=k, replace=False)
    cuts = np.sort(rng.uniform(0.2, 0.8, size=k - 1)) * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    vertical = rng.random() < 0.25
    along, across = (xx, yy) if vertical else (yy, xx)
    amp, freq, phase = rng.uniform(0, 6), rng.uniform(0.03, 0.12), rng.uniform(0, 6.3)
    coord = along + amp * np.sin(across * freq + phase)
    band = np.searchsorted(cuts, coord.ravel()).reshape(size, size)
    return classes[band]


def render_scene(rng: np.random.Generator, size: int, num_things: int,
                 salient: bool = False, style: Optional[SceneStyle] = None) -> Scene:
    """Render one scene.

    Args:
        rng: random generator (the only source of randomness).
        size: image side in pixels.
        num_things: shapes to place (fewer when no free place is found).
        salient: one large central shape on a background (foreground datasets).
        style: how to draw (:mod:`.world_styles`); ``None``: the default world.

    Returns:
        The scene; every thing keeps at least 40 visible pixels.
    """
    style = style or SceneStyle()
    if style.stuff_layout == 'blobs':
        stuff_map = blob_layout(rng, size, len(STUFF_CLASSES),
                                2 if salient else style.max_stuff_classes)
    else:
        stuff_map = _stuff_layout(rng, size, max_bands=2 if salient else style.max_stuff_classes)
    image = np.zeros((size, size, 3), dtype=np.float32)
    for s in np.unique(stuff_map):
        tex = _texture(STUFF_CLASSES[s], size, size, rng, style.texture_gain)
        image[stuff_map == s] = tex[stuff_map == s]
    things: List[Thing] = []
    occupied = np.zeros((size, size), dtype=bool)
    for _ in range(num_things):
        for _attempt in range(12):
            cls = int(rng.integers(len(THING_CLASSES)))
            if salient:
                diam = rng.uniform(0.4, 0.6) * size
                cx, cy = (size / 2 + rng.uniform(-0.12, 0.12) * size for _ in range(2))
            else:
                diam = thing_diameter(rng, style) * size
                cx, cy = (rng.uniform(diam / 2, size - diam / 2) for _ in range(2))
            mask = _shape_mask(THING_CLASSES[cls], cx, cy, diam, rng.uniform(0, np.pi / 4),
                               size, size)
            area = mask.sum()
            if area < 40 or (mask & occupied).sum() > 0.25 * area:
                continue
            color = str(rng.choice(list(COLORS)))
            for t in things:  # the new shape occludes the earlier ones
                t.mask &= ~mask
            things.append(Thing(cls, color, mask))
            occupied |= mask
            shade = np.array(COLORS[color], dtype=np.float32) + rng.normal(0, 5, (3, ))
            if style.camouflage and rng.random() < style.camouflage:
                # a thing-stuff confusion: half its colour, half a stuff texture
                kind = STUFF_CLASSES[int(rng.integers(len(STUFF_CLASSES)))]
                tex = _texture(kind, size, size, rng, style.texture_gain)[mask]
                image[mask] = np.clip(0.5 * shade + 0.5 * tex, 0, 255)
            else:
                image[mask] = np.clip(shade, 0, 255)
            break
    things = [t for t in things if t.mask.sum() >= 40]
    image = np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)
    return Scene(image=image, stuff_map=stuff_map, things=things)
