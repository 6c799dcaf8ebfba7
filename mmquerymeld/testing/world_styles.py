"""Scene styles of the synthetic world: the default one, and study-only ones closer to COCO.

The default style is the main job's and the tests' world (a few large shapes over 2-3 wavy
bands). The query study (issue 11, item 3) found that this world does not reproduce the paper's
premise (learnable queries weak on things, conditional queries weak on stuff, Table 2), so it can
also generate a ``'coco'`` style whose statistics are argued from COCO panoptic, not tuned to
favour any query strategy:

- **many and small things**: 2-10 per image (COCO: ~7 instances per image), diameters
  log-uniform over 8-32% of the side (COCO: 41% of its objects are small);
- **amorphous, fragmented stuff**: 2-4 classes laid out as blobs of a smoothed random field
  (COCO stuff is irregular and often split by the things in front of it), with twice the
  texture noise;
- **thing-stuff confusions**: a quarter of the things are painted half in their colour, half in
  a stuff texture (camouflage).

A style never changes the classes, the file formats or the vocabulary, so every config reads a
world of any style.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Tuple, Union

import cv2
import numpy as np


@dataclass(frozen=True)
class SceneStyle:
    """How scenes are drawn (the default values give the default world, byte for byte).

    Attributes:
        num_things: (min, max) things per non-salient image; ``None``: 1 to the generator's
            ``max_things``.
        thing_diameter: (min, max) thing diameter as a fraction of the image side.
        log_uniform_size: draw the diameter log-uniformly (many small things) instead of uniformly.
        stuff_layout: ``'bands'`` (2-3 wavy bands) or ``'blobs'`` (the arg-max of smoothed random
            fields: irregular, possibly disconnected regions).
        max_stuff_classes: most stuff classes per non-salient image.
        texture_gain: multiplier of the stuff textures' deviation from their mean colour.
        camouflage: probability that a thing is painted half in a stuff texture.
    """
    num_things: Union[Tuple[int, int], None] = None
    thing_diameter: Tuple[float, float] = (0.16, 0.38)
    log_uniform_size: bool = False
    stuff_layout: str = 'bands'
    max_stuff_classes: int = 3
    texture_gain: float = 1.0
    camouflage: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = self.thing_diameter
        if not 0 < lo <= hi < 1:
            raise ValueError(f'SceneStyle.thing_diameter must satisfy 0 < min <= max < 1, got '
                             f'{self.thing_diameter}')
        if self.stuff_layout not in ('bands', 'blobs'):
            raise ValueError(f"SceneStyle.stuff_layout must be 'bands' or 'blobs', got "
                             f'{self.stuff_layout!r}')
        if self.num_things is not None and not 0 <= self.num_things[0] <= self.num_things[1]:
            raise ValueError(f'SceneStyle.num_things must be (min, max) with 0 <= min <= max, '
                             f'got {self.num_things}')
        if not 0.0 <= self.camouflage <= 1.0:
            raise ValueError(f'SceneStyle.camouflage is a probability, got {self.camouflage}')

    def as_dict(self) -> dict:
        """JSON-friendly fields (for ``world_info.json``)."""
        return asdict(self)


#: Named styles: ``generate_synthetic_world(style=...)`` and ``make_synthetic_world.py --style``.
STYLES: Dict[str, SceneStyle] = {
    'default': SceneStyle(),
    'coco': SceneStyle(num_things=(2, 10), thing_diameter=(0.08, 0.32), log_uniform_size=True,
                       stuff_layout='blobs', max_stuff_classes=4, texture_gain=2.0,
                       camouflage=0.25),
}


def get_style(style: Union[str, SceneStyle]) -> SceneStyle:
    """A :class:`SceneStyle` from its name in :data:`STYLES` (or the style itself)."""
    if isinstance(style, SceneStyle):
        return style
    if style not in STYLES:
        raise ValueError(f'unknown synthetic world style {style!r}; choose from {sorted(STYLES)}')
    return STYLES[style]


def thing_diameter(rng: np.random.Generator, style: SceneStyle) -> float:
    """One thing's diameter as a fraction of the image side, drawn as ``style`` says."""
    lo, hi = style.thing_diameter
    if style.log_uniform_size:  # as many things per octave of size: most are small
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    return rng.uniform(lo, hi)


def blob_layout(rng: np.random.Generator, size: int, num_classes: int,
                max_classes: int) -> np.ndarray:
    """Stuff index map ``[size, size]``: the arg-max of smoothed random fields, one per class.

    Args:
        rng: random generator.
        size: image side.
        num_classes: stuff classes to choose from.
        max_classes: most classes in the image (at least 2 are drawn).

    Returns:
        int64 map of stuff class indices; regions are irregular and may be disconnected.
    """
    k = int(rng.integers(2, max(2, max_classes) + 1))
    classes = rng.choice(num_classes, size=k, replace=False)
    grid = int(rng.integers(3, 6))  # 3x3 to 5x5 control points: a few blobs per class
    fields = rng.normal(0, 1, (grid, grid, k)).astype(np.float32)
    smooth = cv2.resize(fields, (size, size), interpolation=cv2.INTER_CUBIC)
    smooth = smooth.reshape(size, size, k)  # cv2 drops a trailing axis of length 1
    return classes[smooth.argmax(axis=-1)].astype(np.int64)
