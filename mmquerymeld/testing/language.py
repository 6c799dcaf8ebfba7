"""Language of the synthetic world: referring expressions and captions of a scene's things."""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from .scenes import Scene
from .world_classes import STUFF_CLASSES, THING_CLASSES


def _where(mask: np.ndarray) -> Tuple[str, str, str]:
    """(horizontal, vertical, size) words of a mask: left/middle/right, top/center/bottom."""
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    cx, cy = xs.mean() / w, ys.mean() / h
    hpos = 'left' if cx < 1 / 3 else 'right' if cx > 2 / 3 else 'middle'
    vpos = 'top' if cy < 1 / 3 else 'bottom' if cy > 2 / 3 else 'center'
    size = 'large' if mask.sum() > 0.06 * h * w else 'small'
    return hpos, vpos, size


def referring_sentences(scene: Scene, idx: int, style: str) -> List[str]:
    """Referring expressions for thing ``idx`` ("the red circle on the left").

    Args:
        scene: the scene.
        idx: index into ``scene.things``.
        style: ``'refcoco'`` (short, with location words), ``'refcoco+'`` (no location words)
            or ``'refcocog'`` (longer sentences).

    Returns:
        Two or three sentences.
    """
    t = scene.things[idx]
    shape = THING_CLASSES[t.cls]
    hpos, vpos, size = _where(t.mask)
    where = 'in the middle' if hpos == 'middle' else f'on the {hpos}'
    if style == 'refcoco':
        return [f'the {t.color} {shape} {where}', f'{t.color} {shape}',
                f'{vpos} {hpos} {shape}']
    if style == 'refcoco+':
        return [f'the {t.color} {shape}', f'{size} {t.color} {shape}', f'{t.color} one']
    if style == 'refcocog':
        return [f'a {size} {t.color} {shape} at the {vpos} {hpos} of the picture',
                f'the {shape} that is painted {t.color}']
    raise ValueError(f'unknown referring style {style!r}')


def unique_sentences(scene: Scene, style: str) -> List[List[str]]:
    """:func:`referring_sentences` for every thing, minus those shared by two things.

    A thing whose every sentence is ambiguous gets one built from all its attributes.
    """
    per_thing = [referring_sentences(scene, i, style) for i in range(len(scene.things))]
    counts: Dict[str, int] = {}
    for sents in per_thing:
        for sent in set(sents):
            counts[sent] = counts.get(sent, 0) + 1
    out = []
    for i, sents in enumerate(per_thing):
        keep = [x for x in sents if counts[x] == 1]
        if not keep:
            t = scene.things[i]
            hpos, vpos, size = _where(t.mask)
            keep = [f'the {size} {t.color} {THING_CLASSES[t.cls]} at the {vpos} {hpos}']
        out.append(keep)
    return out


def object_captions(scene: Scene, idx: int) -> List[str]:
    """Five synthetic object captions (paper section 3.4, "synthetic segmentation caption")."""
    t = scene.things[idx]
    shape = THING_CLASSES[t.cls]
    hpos, vpos, size = _where(t.mask)
    ys, xs = np.nonzero(t.mask)
    under = STUFF_CLASSES[int(np.bincount(scene.stuff_map[ys, xs]).argmax())]
    return [f'a {t.color} {shape}', f'a {size} {t.color} {shape} on the {under}',
            f'{t.color} {shape} at the {vpos} {hpos}', f'a {shape} painted {t.color}',
            f'the {size} {shape} over the {under}']

