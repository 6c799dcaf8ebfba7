"""Overfit one synthetic panoptic image: the loss halves and the masks are learned."""
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.usefixtures('single_thread')

ITERS = 150


def _mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    inter = np.logical_and(pred, gt).sum()
    union = np.logical_or(pred, gt).sum()
    return float(inter) / max(float(union), 1.0)


def test_overfit_one_image(tiny_model, make_batch, overfit):
    torch.manual_seed(0)
    model = tiny_model(seed=0)
    batch = make_batch(tasks=('panoptic', ), size=96)
    model.train()
    data = model.data_preprocessor(batch, True)
    start = time.time()
    history = overfit(model, data, ITERS)
    elapsed = time.time() - start
    first, last = np.mean(history[:5]), np.mean(history[-5:])

    # predicted masks of the queries matched to each ground truth (final layer, eval mode)
    model.eval()
    sample = data['data_samples'][0]
    with torch.no_grad():
        out = model._forward(data['inputs'], data['data_samples'])
    gt = sample.gt_instances
    logits, boxes, masks = (p[-1] for p in model.head.forward_predictions(out, last_only=True))
    q_idx, g_idx = model.head.criterion.match(logits[0], boxes[0], masks[0], gt, sample.metainfo)
    h, w = sample.metainfo['batch_input_shape']
    masks = F.interpolate(masks[0][q_idx][None], size=(h, w), mode='bilinear',
                          align_corners=False)[0].sigmoid() > 0.5
    gt_masks = gt.masks.to_ndarray().astype(bool)
    ious = {sample.metainfo['texts'][int(gt.labels[g])]: _mask_iou(m.numpy(), gt_masks[g])
            for m, g in zip(masks, g_idx.tolist())}
    qtypes = {sample.metainfo['texts'][int(gt.labels[g])]: int(out.query_types[q])
              for q, g in zip(q_idx.tolist(), g_idx.tolist())}
    print(f'\n[overfit] {ITERS} iterations in {elapsed:.1f}s; total loss {first:.3f} -> '
          f'{last:.3f} (ratio {last / first:.3f}); mask IoU {ious}; query types {qtypes}')
    assert last <= 0.5 * first
    assert len(ious) == len(gt)
    assert min(ious.values()) >= 0.5, ious
