"""A test-only hook: records the dtypes the model computes in during training (mixed precision)."""
import json
from collections import defaultdict
from typing import Dict, Set

import mmcv.ops.multi_scale_deform_attn as msda
import torch
from mmcv.ops import MultiScaleDeformableAttention
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import nn

from mmdet.registry import HOOKS


@HOOKS.register_module()
class AmpDtypeProbeHook(Hook):
    """Write to ``out_file`` (JSON) the set of dtypes seen per probe point over the whole run.

    Probe points: ``decoder_ffn`` / ``decoder_self_attn`` (outputs of the linear layers of every
    decoder layer's FFN and of its inner ``nn.MultiheadAttention``), ``deform_attn.<name>`` (the
    inputs of the deformable attention's core op: value, sampling locations, attention weights),
    ``deform_attn_linear`` (outputs of the deformable attentions' own projections),
    ``deform_attn_calls`` (how many times the core op ran), ``decoder_autocast`` (whether autocast
    was on when a decoder layer ran).
    """

    def __init__(self, out_file: str) -> None:
        self.out_file = out_file
        self.records: Dict[str, Set[str]] = defaultdict(set)
        self.calls = 0
        self._orig_core = None

    def _record(self, key: str):
        def hook(module, args, output):
            out = output[0] if isinstance(output, tuple) else output
            self.records[key].add(str(out.dtype))
        return hook

    def before_train(self, runner) -> None:
        from mmquerymeld.models.layers import QueryMeldDecoderLayer
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        for module in model.modules():
            if isinstance(module, QueryMeldDecoderLayer):
                module.register_forward_pre_hook(
                    lambda m, a: self.records['decoder_autocast'].add(
                        str(torch.is_autocast_enabled('cpu'))))
                for sub in module.ffn.modules():
                    if isinstance(sub, nn.Linear):
                        sub.register_forward_hook(self._record('decoder_ffn'))
                module.self_attn.attn.register_forward_hook(self._record('decoder_self_attn'))
            if isinstance(module, MultiScaleDeformableAttention):
                self.records['deform_attn_class'].add(type(module).__name__)
                for sub in (module.value_proj, module.sampling_offsets, module.attention_weights,
                            module.output_proj):
                    sub.register_forward_hook(self._record('deform_attn_linear'))
        self._orig_core = msda.multi_scale_deformable_attn_pytorch

        def core(value, spatial_shapes, sampling_locations, attention_weights):
            self.calls += 1
            for name, t in (('value', value), ('sampling_locations', sampling_locations),
                            ('attention_weights', attention_weights)):
                self.records[f'deform_attn.{name}'].add(str(t.dtype))
            return self._orig_core(value, spatial_shapes, sampling_locations, attention_weights)

        msda.multi_scale_deformable_attn_pytorch = core

    def after_train(self, runner) -> None:
        msda.multi_scale_deformable_attn_pytorch = self._orig_core
        out = {k: sorted(v) for k, v in self.records.items()}
        out['deform_attn_calls'] = self.calls
        with open(self.out_file, 'w') as f:
            json.dump(out, f, indent=1)
