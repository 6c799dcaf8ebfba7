"""tools/analysis/panoptic_diagnosis.py (issue 11): the cause given to a thing that instance
inference finds and the panoptic map (the real post-processing) loses, on crafted queries."""
import os.path as osp
import sys

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tools', 'analysis'))

import panoptic_diagnosis as diag  # noqa: E402
from mmquerymeld.models.heads.dense_postprocessing import postprocess_panoptic  # noqa: E402

H = W = 16
THING_FLAGS = [True, False]  # text 0 'square' (thing), text 1 'grass' (stuff)


def _case(stuff_prob: float, stuff_score: float, thing_score: float = 0.3, thing_rows: int = 6):
    """A conditional query (class 0) whose mask is the first ``thing_rows`` rows of the gt
    square (6: exact; 5: IoU 30 / 36) and a learnable query of class 1 (stuff) whose mask covers
    the image with probability ``stuff_prob``."""
    square = torch.zeros(H, W, dtype=torch.bool)
    square[4:10, 4:10] = True
    part = torch.zeros_like(square)
    part[4:4 + thing_rows, 4:10] = True
    thing_logit = torch.where(part, torch.tensor(6.0), torch.tensor(-6.0))
    stuff_logit = torch.full((H, W), float(torch.logit(torch.tensor(stuff_prob))))
    mask_logits = torch.stack([thing_logit, stuff_logit])
    cls = torch.full((2, 2), -8.0)
    cls[0, 0] = torch.logit(torch.tensor(thing_score))
    cls[1, 1] = torch.logit(torch.tensor(stuff_score))
    qtypes = torch.tensor([1, 0])
    cfg = dict(object_mask_thr=0.1, iou_thr=0.8, mask_thr=0.5)
    pan, _ = postprocess_panoptic(cls, mask_logits, qtypes, THING_FLAGS, **cfg)
    gt_masks = torch.stack([square, ~square])
    gt_labels = torch.tensor([0, 1])
    return diag.diagnose_image(cls, mask_logits.sigmoid(), qtypes, THING_FLAGS, gt_masks,
                               gt_labels, pan.sem_seg[0], cfg)


def test_thing_lost_to_a_confident_stuff_query():
    # 0.9 x 0.6 > 0.3 x 0.998: the stuff query wins the square's pixels
    recs = _case(stuff_prob=0.6, stuff_score=0.9)
    assert len(recs) == 1  # the stuff gt is not a thing
    rec = recs[0]
    assert rec['found'] and not rec['kept']
    assert rec['finder']['type'] == 'conditional' and rec['finder']['kept']
    assert rec['winner']['type'] == 'learnable' and not rec['winner']['label_is_thing']
    assert rec['cause'] == 'pixels won by another query (learnable, stuff class)'
    assert rec['panoptic_majority'] == 'stuff (other class)'
    summary = diag.summarize(recs, examples=1)
    assert summary['found_but_lost'] == 1 and summary['kept_by_panoptic'] == 0


def test_thing_kept_when_the_stuff_query_is_unsure_and_not_kept_below_threshold():
    recs = _case(stuff_prob=0.6, stuff_score=0.2)  # 0.2 x 0.6 < 0.3: the thing wins
    assert recs[0]['found'] and recs[0]['kept'] and 'cause' not in recs[0]
    # PQ's rule: a segment with IoU 30 / 36 > 0.5 matches
    recs = _case(stuff_prob=0.6, stuff_score=0.2, thing_rows=5)
    assert recs[0]['finder_iou'] == round(30 / 36, 3)
    assert recs[0]['found'] and recs[0]['kept']
    recs = _case(stuff_prob=0.6, stuff_score=0.9, thing_score=0.05)  # below object_mask_thr
    assert recs[0]['found'] and not recs[0]['kept']
    assert recs[0]['cause'] == 'finder not kept (score <= object_mask_thr)'
