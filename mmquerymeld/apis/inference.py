"""Open-vocabulary inference: image(s) + any texts + a task -> predictions and overlays."""
import contextlib
import os.path as osp
from typing import ContextManager, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint
from mmdet.models.data_preprocessors import BatchFixedSizePad
from mmdet.structures import DetDataSample

from ..utils.constants import TASKS

ImageType = Union[str, np.ndarray]
#: One vocabulary for every image, or one per image.
TextsArg = Union[str, Sequence[str], Sequence[Sequence[str]]]


class QueryMeldInferencer:
    """Run a QueryMeldNet on images with a vocabulary chosen at call time (paper section 3.3).

    Class names and referring expressions are both just texts: ``texts`` may be any class list
    (semantic / instance / panoptic / detection), one expression per target (referring) or the
    foreground prompt (foreground). One call may give every image its own vocabulary, task and
    thing flags (the head takes them per sample from ``metainfo``); images of different sizes
    share a batch padded to the largest (see ``pad_size`` of :meth:`__call__`).

    Half precision (``half=True``): the forward runs under autocast, fp16 on CUDA and bf16 on the
    CPU; the multi-scale deformable attention stays in fp32 inside it
    (:class:`~mmquerymeld.models.layers.Fp32MultiScaleDeformableAttention`), and texts missing from
    the text cache are encoded in fp32, so cached embeddings never depend on the precision.

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
        half: Predict under fp16 (CUDA) / bf16 (CPU) autocast.
    """

    def __init__(self, config: Union[str, Config], checkpoint: Optional[str] = None,
                 device: str = 'cpu', img_scale: Optional[Tuple[int, int]] = None,
                 half: bool = False) -> None:
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
        self.device = torch.device(device)
        self.half = bool(half)
        scale = img_scale or cfg.get('infer_img_scale', (1333, 800))
        self.img_scale = tuple(int(s) for s in scale)
        self.pipeline = Compose([
            dict(type='mmdet.LoadImageFromNDArray'),
            dict(type='mmdet.Resize', scale=self.img_scale, keep_ratio=True),
            dict(type='PackQueryMeldInputs'),
        ])
        self.visualizer = VISUALIZERS.build(dict(type='QueryMeldLocalVisualizer',
                                                 name=f'qm_infer_{id(self)}'))

    def precision(self) -> ContextManager:
        """The precision context of a forward: autocast in fp16 (CUDA) / bf16 (CPU) with
        ``half``, else a no-op."""
        if not self.half:
            return contextlib.nullcontext()
        dtype = torch.float16 if self.device.type == 'cuda' else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    @staticmethod
    def _per_image(value, num: int, name: str, is_single) -> list:
        """``value`` for every image (shared) or one per image (a list of ``num``)."""
        if is_single(value):
            return [value] * num
        if not isinstance(value, (list, tuple)) or len(value) != num:
            raise ValueError(f'{name}: give one value for all images or a list of one per image '
                             f'({num} images), got {value!r}')
        return list(value)

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
    def __call__(self, images: Union[ImageType, Sequence[ImageType]], texts: TextsArg,
                 task: Union[str, Sequence[str]] = 'semantic',
                 thing_flags: Optional[Sequence] = None,
                 pad_size: Optional[Tuple[int, int]] = None) -> List[DetDataSample]:
        """Predict one batch.

        Args:
            images: A path / BGR uint8 array ``[H, W, 3]``, or a list of N of them (any sizes).
            texts: The vocabulary (K texts) of every image, or N vocabularies (a list of lists).
            task: One of ``mmquerymeld.utils.TASKS``, or N tasks.
            thing_flags: Panoptic only: one bool per text (thing / stuff), or N such lists
                (None for the images of other tasks).
            pad_size: ``(h, w)`` input frame every image is padded to (at least the resized
                size of each). By default the batch is padded to its largest image (rounded to
                the preprocessor's size divisor); the pixel decoder has no padding mask, so the
                frame changes the features everywhere (group norm statistics, normalised
                positions and sampling offsets): an image's prediction equals its single-image
                prediction only in the same frame. A fixed ``pad_size`` makes predictions
                independent of the batch an image is in.

        Returns:
            N ``DetDataSample`` with each image's task's prediction fields at its original size
            (docs/data_contract.md); floating-point predictions in fp32 also with ``half``.
        """
        if isinstance(images, (str, np.ndarray)):
            images = [images]
        num = len(images)
        texts_per = self._per_image(texts, num, 'texts', lambda t: isinstance(t, str) or (
            isinstance(t, (list, tuple)) and all(isinstance(x, str) for x in t)))
        tasks = self._per_image(task, num, 'task', lambda t: isinstance(t, str))
        flags_per = self._per_image(thing_flags, num, 'thing_flags', lambda f: f is None or (
            isinstance(f, (list, tuple)) and all(not isinstance(x, (list, tuple)) and x is not None
                                                 for x in f)))
        batch = []
        for i, image in enumerate(images):
            try:
                vocab = self._check_args(texts_per[i], tasks[i], flags_per[i])
            except ValueError as err:
                raise ValueError(f'image {i}: {err}' if num > 1 else str(err)) from None
            img, path = self._load(image)
            results = dict(img=img, img_id=i, img_path=path, task=tasks[i], texts=vocab,
                           source='inference')
            if flags_per[i] is not None:
                results['thing_flags'] = [bool(f) for f in flags_per[i]]
            packed = self.pipeline(results)
            # LoadImageFromNDArray resets img_path; keep the caller's file name
            packed['data_samples'].set_metainfo(dict(img_path=path))
            batch.append(packed)
        data = dict(inputs=[b['inputs'] for b in batch],
                    data_samples=[b['data_samples'] for b in batch])
        data = self.model.data_preprocessor(data, False)
        if pad_size is not None:
            data['inputs'], data['data_samples'] = self._pad(data['inputs'],
                                                             data['data_samples'], pad_size)
        with self.precision():
            samples = self.model(**data, mode='predict')
        return [_to_fp32(sample) for sample in samples]

    @staticmethod
    def _pad(inputs: torch.Tensor, samples: List[DetDataSample],
             pad_size: Tuple[int, int]) -> Tuple[torch.Tensor, List[DetDataSample]]:
        """Pad the preprocessed ``[N, 3, H, W]`` batch to ``pad_size`` (mmdet's
        ``BatchFixedSizePad``: zeros after normalisation, ``batch_input_shape`` updated)."""
        pad_h, pad_w = (int(v) for v in pad_size)
        if inputs.shape[-2] > pad_h or inputs.shape[-1] > pad_w:
            raise ValueError(f'pad_size={tuple(pad_size)} is smaller than the batch '
                             f'({tuple(inputs.shape[-2:])} after resizing and padding)')
        return BatchFixedSizePad((pad_h, pad_w))(inputs, samples)

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


def _to_fp32(sample: DetDataSample) -> DetDataSample:
    """Floating-point prediction tensors of ``sample`` in fp32 (autocast may leave fp16/bf16)."""
    for field in ('pred_instances', 'pred_sem_seg', 'pred_panoptic_seg'):
        data = sample.get(field)
        if data is None:
            continue
        for key in list(data.keys()):
            value = data.get(key)
            if torch.is_tensor(value) and value.is_floating_point() and \
                    value.dtype != torch.float32:
                data.set_field(value.float(), key)
    return sample
