"""Saving test-time pictures of every source of a multi-source evaluation."""
import os.path as osp
from collections import defaultdict
from typing import Sequence

import mmcv
from mmdet.engine.hooks import DetVisualizationHook
from mmdet.registry import HOOKS
from mmdet.structures import DetDataSample
from mmengine.fileio import get
from mmengine.utils import mkdir_or_exist


@HOOKS.register_module()
class QueryMeldVisualizationHook(DetVisualizationHook):
    """Like :class:`DetVisualizationHook`, with file names that keep sources apart.

    Sources of a multi-source evaluation often share image file names (COCO panoptic and COCO
    instances read the same images), so test pictures are written as
    ``<test_out_dir>/<source>/<task>_<image name>.png``, at most ``max_per_source`` per source.

    Args:
        max_per_source: Pictures saved per source (None: all).
        **kwargs: See :class:`DetVisualizationHook` (``draw``, ``test_out_dir``, ``score_thr``...).
    """

    def __init__(self, max_per_source: int = 8, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_per_source = max_per_source
        self._saved = defaultdict(int)

    def after_test_iter(self, runner, batch_idx: int, data_batch: dict,
                        outputs: Sequence[DetDataSample]) -> None:
        if self.draw is False:
            return
        out_dir = None
        if self.test_out_dir is not None:
            out_dir = osp.join(runner.work_dir, runner.timestamp, self.test_out_dir)
        for data_sample in outputs:
            self._test_index += 1
            source = data_sample.metainfo.get('source', 'default')
            if self.max_per_source is not None and self._saved[source] >= self.max_per_source:
                continue
            self._saved[source] += 1
            img_path = data_sample.img_path
            img = mmcv.imfrombytes(get(img_path, backend_args=self.backend_args),
                                   channel_order='rgb')
            out_file = None
            if out_dir is not None:
                task = data_sample.metainfo.get('task', 'task')
                stem = osp.splitext(osp.basename(img_path))[0]
                mkdir_or_exist(osp.join(out_dir, source))
                out_file = osp.join(out_dir, source, f'{task}_{stem}.png')
            self._visualizer.add_datasample(
                f'{source}/{osp.basename(img_path)}', img, data_sample=data_sample,
                show=self.show, wait_time=self.wait_time, pred_score_thr=self.score_thr,
                out_file=out_file, step=self._test_index)
