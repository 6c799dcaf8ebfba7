"""Scene styles (issue 11 item 3): the default world unchanged, the 'coco' style's statistics."""
import json

import cv2
import numpy as np
import pytest

from mmquerymeld.testing import generate_synthetic_world, render_scene
from mmquerymeld.testing.world_styles import STYLES, SceneStyle, get_style, thing_diameter


def _scenes(style, n=24, seed=0):
    rng = np.random.default_rng(seed)
    spec = get_style(style)
    lo, hi = spec.num_things or (1, 4)
    return [render_scene(rng, 128, int(rng.integers(lo, hi + 1)), style=spec) for _ in range(n)]


def test_default_style_draws_the_default_world():
    plain = [render_scene(np.random.default_rng(k), 96, 3) for k in range(4)]
    styled = [render_scene(np.random.default_rng(k), 96, 3, style=STYLES['default'])
              for k in range(4)]
    for a, b in zip(plain, styled):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.stuff_map, b.stuff_map)
        assert [t.cls for t in a.things] == [t.cls for t in b.things]


def test_coco_diameters_are_log_uniform():
    rng = np.random.default_rng(0)
    coco = np.array([thing_diameter(rng, STYLES['coco']) for _ in range(4000)])
    default = np.array([thing_diameter(rng, STYLES['default']) for _ in range(4000)])
    assert coco.min() >= 0.08 and coco.max() <= 0.32
    # log-uniform over [0.08, 0.32]: median sqrt(0.08 * 0.32) = 0.16 (uniform: 0.20)
    assert abs(np.median(coco) - 0.16) < 0.01, np.median(coco)
    assert abs(np.median(default) - 0.27) < 0.01, np.median(default)


def test_coco_style_has_more_smaller_things_and_fragmented_stuff():
    default, coco = _scenes('default'), _scenes('coco')
    per_image = {k: np.mean([len(s.things) for s in v]) for k, v in
                 (('default', default), ('coco', coco))}
    assert per_image['coco'] > 1.5 * per_image['default'], per_image
    areas = {k: np.median([t.mask.sum() for s in v for t in s.things]) for k, v in
             (('default', default), ('coco', coco))}
    assert areas['coco'] < 0.5 * areas['default'], areas

    def fragmented(scene):  # some stuff class split into several pieces
        return any(cv2.connectedComponents((scene.stuff_map == c).astype(np.uint8))[0] > 2
                   for c in np.unique(scene.stuff_map))

    assert sum(map(fragmented, coco)) >= len(coco) // 3
    assert sum(map(fragmented, default)) == 0  # bands are never split
    assert max(len(np.unique(s.stuff_map)) for s in default) <= 3  # the default world's 2-3


def test_coco_style_camouflages_some_things():
    def spread(scenes):  # colour spread inside each thing: plain paint is flat
        return np.array([s.image[t.mask].std(axis=0).mean() for s in scenes for t in s.things
                         if t.mask.sum() >= 40])

    plain = spread(_scenes('default'))
    coco = spread(_scenes('coco'))
    assert (plain < 8).all(), plain.max()  # 5-level shade noise + 2-level image noise
    share = float((coco > 8).mean())
    assert 0.1 < share < 0.45, share  # about a quarter of the things


def test_world_info_records_the_style_and_a_bad_style_is_named(tmp_path):
    info = generate_synthetic_world(str(tmp_path / 'w'), num_train=2, num_val=1, img_size=64,
                                    style='coco')
    assert info['style'] == 'coco'
    with open(tmp_path / 'w' / 'world_info.json') as f:
        assert json.load(f)['style_settings']['stuff_layout'] == 'blobs'
    with pytest.raises(ValueError, match="unknown synthetic world style 'cityscapes'"):
        generate_synthetic_world(str(tmp_path / 'x'), style='cityscapes')
    with pytest.raises(ValueError, match='thing_diameter'):
        SceneStyle(thing_diameter=(0.3, 0.1))
    with pytest.raises(ValueError, match='stuff_layout'):
        SceneStyle(stuff_layout='stripes')
