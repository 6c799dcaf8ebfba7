"""Mixed precision without a loss scaler: bf16 autocast, e.g. on CPU."""
from contextlib import contextmanager
from typing import Iterator, Union

import torch
from mmengine.optim import OptimWrapper
from torch import nn

from mmdet.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """:class:`OptimWrapper` whose forward context runs under ``torch.autocast`` (bf16, no scaler).

    mmengine's :class:`AmpOptimWrapper` refuses to build without a GPU; fp16 needs its dynamic
    loss scale, bf16 does not (same exponent range as fp32), so bf16 autocast only has to be entered
    around the forward pass and the loss: :meth:`optim_context` (which mmengine's
    ``BaseModel.train_step`` wraps around the data preprocessor and the loss) enters
    ``torch.autocast(device_type, dtype)``. Backward, gradient clipping and the optimizer step run
    outside it on the fp32 master weights, as with ``AmpOptimWrapper``. ``tools/train.py --amp``
    picks this wrapper on machines without CUDA and ``AmpOptimWrapper`` (fp16, dynamic loss scale)
    on CUDA.

    Args:
        device_type: ``torch.autocast`` device type (``'cpu'`` by default).
        dtype: ``'bfloat16'`` or ``torch.bfloat16``; fp16 is refused (it needs a loss scale:
            use ``AmpOptimWrapper``).
        **kwargs: Arguments of :class:`OptimWrapper` (``optimizer``, ``clip_grad``,
            ``accumulative_counts``).
    """

    def __init__(self, device_type: str = 'cpu', dtype: Union[str, torch.dtype] = 'bfloat16',
                 **kwargs) -> None:
        super().__init__(**kwargs)
        cast_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        if cast_dtype != torch.bfloat16:
            raise ValueError(f'AutocastOptimWrapper: dtype {dtype} is not bfloat16; fp16 needs '
                             "loss scaling: use optim_wrapper.type='AmpOptimWrapper' "
                             "(loss_scale='dynamic')")
        self.device_type = device_type
        self.cast_dtype = cast_dtype

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        """Gradient-accumulation context of :class:`OptimWrapper` plus autocast.

        Args:
            model: The training model.
        """
        with super().optim_context(model), torch.autocast(
                device_type=self.device_type, dtype=self.cast_dtype):
            yield
