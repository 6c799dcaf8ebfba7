"""QueryMeldNet detector: image encoder (+ neck) and the QueryMeld head."""
from typing import Dict, Tuple, Union

from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.optim import OptimWrapper
from mmengine.structures import InstanceData, PixelData
from torch import Tensor

from ...engine.nonfinite import guarded_update
from ..heads.outputs import QueryMeldHeadOutputs


@MODELS.register_module()
class QueryMeldNet(BaseDetector):
    """QueryMeldNet (paper section 3.1, Figure 2): one open-vocabulary model for many tasks.

    The image encoder is any registered backbone (mmdet / mmpretrain / mmseg / timm via
    mmpretrain, by config) with an optional neck; the text encoder, segmentation encoder and
    decoder live in the head (:class:`QueryMeldHead`). Each data sample carries its own vocabulary
    (``metainfo['texts']``) and task (``metainfo['task']``); the detector checks them and passes the
    samples to the head, which embeds the texts and post-processes per task.

    Args:
        backbone: Backbone config; its outputs must match the head's pixel decoder ``in_channels``.
        head: :class:`QueryMeldHead` config.
        neck: Optional neck config (e.g. ``ChannelMapper``).
        train_cfg / test_cfg: Merged into the head config.
        data_preprocessor: e.g. mmdet ``DetDataPreprocessor`` (``pad_mask=True``).
        init_cfg: Initialisation config.
    """

    def __init__(self,
                 backbone: ConfigType,
                 head: ConfigType,
                 neck: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        if neck is not None:
            self.neck = MODELS.build(neck)
        head = dict(head)
        if train_cfg is not None:
            head['train_cfg'] = train_cfg
        if test_cfg is not None:
            head['test_cfg'] = test_cfg
        self.head = MODELS.build(head)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg

    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor, ...]:
        """Backbone (+ neck) features.

        Args:
            batch_inputs: ``[B, 3, H, W]`` normalised, padded images.

        Returns:
            tuple[Tensor]: multi-scale features, high to low resolution.
        """
        x = self.backbone(batch_inputs)
        if self.with_neck:
            x = self.neck(x)
        return tuple(x)

    @staticmethod
    def _check_samples(batch_data_samples: SampleList) -> None:
        """Data samples are required: they carry the vocabularies and tasks (the head checks
        each sample's ``texts`` / ``task`` and names the offending field)."""
        if batch_data_samples is None or len(batch_data_samples) == 0:
            raise ValueError('QueryMeldNet: data_samples are required (they carry each image\'s '
                             "metainfo['texts'] and ['task'])")

    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Losses of a batch (:meth:`QueryMeldHead.loss`: ``forward`` -> ``loss_by_feat``)."""
        self._check_samples(batch_data_samples)
        x = self.extract_feat(batch_inputs)
        return self.head.loss(x, batch_data_samples)

    def train_step(self, data: Union[dict, tuple, list],
                   optim_wrapper: OptimWrapper) -> Dict[str, Tensor]:
        """mmengine's ``BaseModel.train_step``, except that a NaN / Inf loss skips the step.

        The check and the (distributed) agreement live in
        :func:`mmquerymeld.engine.nonfinite.guarded_update`; ``NonFiniteLossHook`` logs the
        skipped step with its samples and stops the run after too many in a row.

        Returns:
            dict[str, Tensor]: the log variables, plus ``nonfinite_skipped`` (0 or 1).
        """
        with optim_wrapper.optim_context(self):
            data = self.data_preprocessor(data, True)
            losses = self._run_forward(data, mode='loss')
        parsed_losses, log_vars = self.parse_losses(losses)
        return guarded_update(parsed_losses, log_vars, optim_wrapper)

    def predict(self, batch_inputs: Tensor, batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Predict and write the task's fields into the data samples.

        Returns:
            list[DetDataSample]: with ``pred_sem_seg`` / ``pred_instances`` /
            ``pred_panoptic_seg`` as in docs/data_contract.md.
        """
        self._check_samples(batch_data_samples)
        x = self.extract_feat(batch_inputs)
        results = self.head.predict(x, batch_data_samples, rescale=rescale)
        for sample, fields in zip(batch_data_samples, results):
            for key, value in fields.items():
                if key in ('pred_sem_seg', 'pred_panoptic_seg') and isinstance(value, dict):
                    value = PixelData(**value)
                elif key == 'pred_instances' and isinstance(value, dict):
                    value = InstanceData(**value)
                setattr(sample, key, value)
        return batch_data_samples

    def _forward(self, batch_inputs: Tensor,
                 batch_data_samples: SampleList = None) -> QueryMeldHeadOutputs:
        """The head's forward outputs (no post-processing), for ``mode='tensor'``.

        Returns:
            QueryMeldHeadOutputs: per-layer states and references, mask features, text
            embeddings, encoder proposals, ``dn_meta`` and query types; per-level predictions
            follow from ``self.head.forward_predictions(outputs)``.
        """
        self._check_samples(batch_data_samples)
        x = self.extract_feat(batch_inputs)
        return self.head(x, batch_data_samples)
