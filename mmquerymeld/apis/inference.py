"""Open-vocabulary inference: image(s) + any texts + a task -> predictions and overlays."""
import os.path as osp
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmdet.structures import DetDataSample

from ..utils.constants import TASKS

ImageType = Union[str, np.ndarray]


class QueryMeldInferencer:
    """Run a QueryMeldNet on images with a vocabulary chosen at call time (paper section 3.3).

    Class names and referring expressions are both just texts: ``texts`` may be any class list
    (semantic / instance / panoptic / detection), one expression per target (referring) or the
    foreground prompt (foreground).

    Example::

        inferencer = QueryMeldInferencer('configs/demo/querymeld_tiny_synthetic.py',
                                         'work_dirs/demo/iter_2000.pth')
        [sample] = inferencer('demo.png', texts=['circle', 'sky'], task='semantic')
        inferencer.draw('demo.png', sample, 'demo_overlay.png')

    Args:
        config: Config file or loaded config (its ``model`` is built).
        checkpoint: Checkpoint file (mmengine format or a plain state dict); None keeps the
            initialisation (useful for tests only).
        device: Device to run on ('cpu', 'cuda', 'cuda:1' ...).
        img_scale: ``(w, h)`` the image is resized to (aspect ratio kept); default: the config's
            ``infer_img_scale``, else (1333, 800).
    """

    def __init__(self, config: Union[str, Config], checkpoint: Optional[str] = None,
                 device: str = 'cpu', img_scale: Optional[Tuple[int, int]] = None) -> None:
        cfg = Config.fromfile(config) if isinstance(config, str) else config
        init_default_scope(cfg.get('default_scope', 'mmdet'))
        import mmquerymeld  # noqa: F401  (registration)
        from mmdet.registry import MODELS, VISUALIZERS
        self.cfg = cfg
        self.model = MODELS.build(cfg.model)
        if checkpoint is not None:
            if not osp.isfile(checkpoint):
                raise FileNotFoundError(f'checkpoint file not found: {checkpoint}')
            load_checkpoint(self.model, checkpoint, map_location='cpu')
        self.model.to(device).eval()
        scale = img_scale or cfg.get('infer_img_scale', (1333, 800))
        self.img_scale = tuple(int(s) for s in scale)
        self.pipeline = Compose([
            dict(type='mmdet.LoadImageFromNDArray'),
            dict(type='mmdet.Resize', scale=self.img_scale, keep_ratio=True),
            dict(type='PackQueryMeldInputs'),
        ])
        self.visualizer = VISUALIZERS.build(dict(type='QueryMeldLocalVisualizer',
                                                 name=f'qm_infer_{id(self)}'))

    @staticmethod
    def _check_args(texts: Sequence[str], task: str,
                    thing_flags: Optional[Sequence[bool]]) -> List[str]:
        if task not in TASKS:
            raise ValueError(f'task must be one of {TASKS}, got {task!r}')
        if isinstance(texts, str):
            texts = [texts]
        texts = [str(t) for t in texts]
        if not texts or any(not t.strip() for t in texts):
            raise ValueError(f'texts must be a non-empty list of non-empty strings, got {texts!r}')
        if task == 'panoptic':
            if thing_flags is None or len(thing_flags) != len(texts):
                raise ValueError('panoptic inference needs thing_flags: one bool per text '
                                 '(True = thing, False = stuff)')
        if task == 'foreground' and len(texts) != 1:
            raise ValueError('foreground inference takes exactly one prompt text, e.g. '
                             '"the most salient object"')
        return texts

    @staticmethod
    def _load(image: ImageType) -> Tuple[np.ndarray, str]:
        if isinstance(image, np.ndarray):
            return image, ''
        import mmcv
        if not osp.isfile(image):
            raise FileNotFoundError(f'image file not found: {image}')
        img = mmcv.imread(image)
        if img is None:
            raise ValueError(f'cannot decode image: {image}')
        return img, image

    @torch.no_grad()
    def __call__(self, images: Union[ImageType, Sequence[ImageType]], texts: Sequence[str],
                 task: str = 'semantic',
                 thing_flags: Optional[Sequence[bool]] = None) -> List[DetDataSample]:
        """Predict.

        Args:
            images: A path / BGR uint8 array ``[H, W, 3]``, or a list of them.
            texts: The vocabulary (K texts).
            task: One of ``mmquerymeld.utils.TASKS``.
            thing_flags: Panoptic only: one bool per text (thing / stuff).

        Returns:
            One ``DetDataSample`` per image with the task's prediction fields at the image's
            original size (docs/data_contract.md).
        """
        texts = self._check_args(texts, task, thing_flags)
        if isinstance(images, (str, np.ndarray)):
            images = [images]
        batch = []
        for i, image in enumerate(images):
            img, path = self._load(image)
            results = dict(img=img, img_id=i, img_path=path, task=task, texts=list(texts),
                           source='inference')
            if thing_flags is not None:
                results['thing_flags'] = [bool(f) for f in thing_flags]
            packed = self.pipeline(results)
            # LoadImageFromNDArray resets img_path; keep the caller's file name
            packed['data_samples'].set_metainfo(dict(img_path=path))
            batch.append(packed)
        data = dict(inputs=[b['inputs'] for b in batch],
                    data_samples=[b['data_samples'] for b in batch])
        return self.model.test_step(data)

    def draw(self, image: ImageType, sample: DetDataSample, out_file: str,
             score_thr: float = 0.3) -> np.ndarray:
        """Paint ``sample``'s prediction over ``image`` and write it to ``out_file``.

        Returns:
            The painted RGB image ``[H, W, 3]``.
        """
        img, _ = self._load(image)
        self.visualizer.add_datasample('inference', img[..., ::-1], sample, draw_gt=False,
                                       pred_score_thr=score_thr, out_file=out_file)
        return self.visualizer.get_image()
