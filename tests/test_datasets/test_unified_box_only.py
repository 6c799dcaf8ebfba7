"""Box-only samples carry no dense masks: loader, augmentation, ToUnifiedTargets, packing, collate
and the data preprocessor's mask padding (issue 9, item 2)."""
import numpy as np
import pytest
import torch
from mmdet.models.data_preprocessors import DetDataPreprocessor
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BaseInstanceMasks, BitmapMasks
from mmengine.dataset import pseudo_collate
from mmengine.structures import InstanceData

from mmquerymeld.datasets.transforms import PackQueryMeldInputs, ToUnifiedTargets
from mmquerymeld.datasets.transforms.box_only_masks import BoxOnlyMasks
from mmquerymeld.utils import register_all_modules

CLASSES = [f'class{i}' for i in range(50)]
SIZE = 1024
NUM_BOXES = 300


def _held_bytes(value) -> int:
    """Bytes of memory a field really holds (views count their base; zero-stride views ~0)."""
    if isinstance(value, torch.Tensor):
        return value.untyped_storage().nbytes()
    if isinstance(value, np.ndarray):
        while isinstance(value.base, np.ndarray):
            value = value.base
        return value.nbytes
    if isinstance(value, BaseInstanceMasks):
        return _held_bytes(value.masks) if hasattr(value, 'masks') else 0
    if hasattr(value, 'tensor'):  # mmdet box types
        return _held_bytes(value.tensor)
    return 0


def _gt_bytes(gt: InstanceData) -> int:
    return sum(_held_bytes(v) for _, v in gt.items())


def _boxes(n: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, size * 0.85, (n, 2))
    wh = rng.uniform(8, size * 0.1, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def _box_only_results(n: int = NUM_BOXES, size: int = SIZE) -> dict:
    """A detection sample as ``LoadQMAnnotations`` leaves it (instances without masks)."""
    boxes = _boxes(n, size)
    instances = [dict(bbox=b.tolist(), bbox_label=i % len(CLASSES), ignore_flag=0)
                 for i, b in enumerate(boxes)]
    return dict(task='detection', source='o365', source_meta=dict(classes=CLASSES),
                img=np.zeros((size, size, 3), np.uint8), img_shape=(size, size),
                ori_shape=(size, size), instances=instances, img_path='o365_0.jpg')


def _masked_results(size=(64, 80)) -> dict:
    h, w = size
    masks = np.zeros((2, h, w), np.uint8)
    masks[0, 4:20, 6:30] = 1
    masks[1, 30:60, 40:70] = 1
    return dict(task='instance', source='coco', source_meta=dict(classes=CLASSES),
                img=np.zeros((h, w, 3), np.uint8), img_shape=(h, w), ori_shape=(h, w),
                gt_bboxes=HorizontalBoxes(np.array([[6, 4, 30, 20], [40, 30, 70, 60]],
                                                   np.float32)),
                gt_bboxes_labels=np.array([3, 7]), gt_ignore_flags=np.zeros(2, bool),
                gt_masks=BitmapMasks(masks, h, w), img_path='coco_0.jpg')


def _preprocess(samples):
    pre = DetDataPreprocessor(pad_mask=True, pad_size_divisor=32)
    return pre(pseudo_collate(samples), training=True)['data_samples']


def test_300_box_sample_holds_its_boxes_not_300_masks_at_every_stage():
    """Loader -> flip / resize / crop -> ToUnifiedTargets -> PackQueryMeldInputs ->
    DetDataPreprocessor(pad_mask=True): never a [300, H, W] array (~300 MB at 1024^2)."""
    register_all_modules()
    budget = 64 * NUM_BOXES * 4 * 8  # generous: a few copies of the boxes and flags
    res = TRANSFORMS.build(dict(type='LoadQMAnnotations'))(_box_only_results())
    assert len(res['gt_masks']) == NUM_BOXES and _held_bytes(res['gt_masks']) < budget
    for cfg in (dict(type='RandomFlip', prob=1.0), dict(type='Resize', scale=(1333, 800),
                                                         keep_ratio=True),
                dict(type='RandomCrop', crop_size=(600, 600)), dict(type='Pad', size=(640, 640))):
        res = TRANSFORMS.build(cfg)(res)
        masks = res['gt_masks']
        assert (masks.height, masks.width) == res['img'].shape[:2], cfg['type']
        assert len(masks) == len(res['gt_bboxes']) and _held_bytes(masks) < budget, cfg['type']
    res = ToUnifiedTargets()(res)
    n = len(res['gt_bboxes'])  # crops may leave slivers below min_box_size: dropped
    assert _held_bytes(res['gt_masks']) < budget and not res['gt_mask_valid'].any()
    packed = PackQueryMeldInputs()(res)
    gt = packed['data_samples'].gt_instances
    assert len(gt) == n > 0 and _gt_bytes(gt) < budget
    gt = _preprocess([packed])[0].gt_instances
    assert len(gt) == n and not gt.mask_valid.any() and _gt_bytes(gt) < budget
    assert tuple(gt.masks.to_ndarray().shape) == (n, 640, 640)  # still reads as empty masks


def test_300_box_sample_from_boxes_alone():
    """The same without a loader: ToUnifiedTargets given boxes only, at 1024^2."""
    boxes = _boxes(NUM_BOXES, SIZE)
    res = dict(task='detection', source='o365', source_meta=dict(classes=CLASSES),
               img=np.zeros((SIZE, SIZE, 3), np.uint8), img_shape=(SIZE, SIZE),
               ori_shape=(SIZE, SIZE), gt_bboxes=HorizontalBoxes(boxes),
               gt_bboxes_labels=np.arange(NUM_BOXES) % len(CLASSES),
               gt_ignore_flags=np.zeros(NUM_BOXES, bool))
    packed = PackQueryMeldInputs()(ToUnifiedTargets()(res))
    gt = _preprocess([packed])[0].gt_instances
    assert len(gt) == NUM_BOXES and _gt_bytes(gt) < 64 * NUM_BOXES * 4 * 8
    np.testing.assert_allclose(gt.bboxes.numpy(), boxes)


@pytest.mark.parametrize('box_only_first', [True, False])
def test_mixed_batch_collates_and_pads(box_only_first):
    """mmdet's preprocessor pads every sample's masks when the first has them: the placeholder
    pads to the batch frame without pixels, the real masks are padded as usual."""
    register_all_modules()
    box_only = TRANSFORMS.build(dict(type='LoadQMAnnotations'))(_box_only_results(40, 96))
    box_only = PackQueryMeldInputs()(ToUnifiedTargets()(box_only))
    masked = PackQueryMeldInputs()(ToUnifiedTargets()(_masked_results()))
    samples = [box_only, masked] if box_only_first else [masked, box_only]
    out = _preprocess(samples)
    b, m = (out[0], out[1]) if box_only_first else (out[1], out[0])
    assert b.batch_input_shape == m.batch_input_shape == (96, 96)
    assert isinstance(b.gt_instances.masks, BoxOnlyMasks)
    assert (b.gt_instances.masks.height, b.gt_instances.masks.width) == (96, 96)
    assert _gt_bytes(b.gt_instances) < 40 * 4 * 8 * 8
    mm = m.gt_instances.masks
    assert type(mm) is BitmapMasks and mm.masks.shape == (2, 96, 96)
    assert mm.masks[0, 4:20, 6:30].all() and mm.masks[:, 64:].sum() == 0
    assert m.gt_instances.mask_valid.all() and not b.gt_instances.mask_valid.any()


def test_instances_partly_without_masks_keep_dense_rows():
    """A sample mixing masked and box-only instances keeps one mask row per instance."""
    h, w = 32, 32
    m = np.zeros((h, w), np.uint8)
    m[2:10, 2:10] = 1
    rows = [dict(label=1, texts=None, mask_valid=True), dict(label=2, texts=None,
                                                             mask_valid=False)]
    res = dict(task='detection', source='d', source_meta=dict(classes=CLASSES),
               img=np.zeros((h, w, 3), np.uint8), img_shape=(h, w), ori_shape=(h, w),
               gt_bboxes=HorizontalBoxes(np.array([[2, 2, 10, 10], [12, 12, 30, 30]],
                                                  np.float32)),
               gt_bboxes_labels=np.array([0, 1]), gt_ignore_flags=np.zeros(2, bool),
               gt_masks=BitmapMasks(np.stack([m, np.zeros_like(m)]), h, w),
               gt_instance_table=rows)
    out = ToUnifiedTargets()(res)
    assert type(out['gt_masks']) is BitmapMasks and out['gt_masks'].masks.shape == (2, h, w)
    assert out['gt_mask_valid'].tolist() == [True, False]


def test_box_only_masks_follow_geometry_without_pixels():
    masks = BoxOnlyMasks(5, 40, 60)
    assert len(masks) == 5 and masks.masks.shape == (5, 40, 60) and masks.areas.tolist() == [0] * 5
    assert (masks.rescale(0.5).height, masks.rescale(0.5).width) == (20, 30)
    assert (masks.resize((10, 12)).height, masks.resize((10, 12)).width) == (10, 12)
    assert (masks.pad((64, 64)).height, masks.flip().width) == (64, 60)
    cropped = masks.crop(np.array([10, 5, 50, 35]))
    assert (cropped.height, cropped.width) == (30, 40)
    assert len(masks[np.array([0, 3])]) == 2 and len(masks[np.array([True] * 2 + [False] * 3)]) == 2
    assert len(masks[1:4]) == 3 and len(masks[2]) == 1
    assert isinstance(BoxOnlyMasks.cat([masks, masks[:2]]), BoxOnlyMasks)
    assert len(BoxOnlyMasks.cat([masks, masks[:2]])) == 7
    mixed = BoxOnlyMasks.cat([masks, BitmapMasks(np.ones((1, 40, 60), np.uint8), 40, 60)])
    assert type(mixed) is BitmapMasks and mixed.masks.shape == (6, 40, 60)
    assert mixed.masks[:5].sum() == 0 and mixed.masks[5].all()
    t = masks.to_tensor(torch.bool, 'cpu')
    assert t.shape == (5, 40, 60) and not t.any() and t.untyped_storage().nbytes() == 1
    assert masks.get_bboxes(HorizontalBoxes).tensor.shape == (5, 4)  # as RandomCrop asks
    # an InstanceData holding it indexes it like any mask field
    gt = InstanceData(bboxes=torch.zeros(5, 4), masks=masks)
    assert len(gt[torch.tensor([True, False, True, False, False])].masks) == 2
