"""Builders of :class:`QueryMeldHead`'s text side and decoder from their configs (defaults filled
in from the head, the former single text-classifier config split, the meld switched off when
one query set is empty)."""
import copy
import logging
from typing import Tuple

from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType
from mmengine.logging import print_log
from torch import nn

from ..layers.query_meld_decoder import QueryMeldDecoder
from ..text import split_legacy_text_cfg


def build_text_side(text_encoder: OptConfigType, text_classifier: ConfigType,
                    embed_dims: int) -> Tuple[nn.Module, nn.Module]:
    """The text encoder and the query-text classifier of the head.

    Args:
        text_encoder: Config of the text encoder (``OpenCLIPTextEncoder``), or None with a
            config of the former ``OpenCLIPTextClassifier`` as ``text_classifier`` (split into
            the two with a deprecation warning, :func:`split_legacy_text_cfg`).
        text_classifier: Config of ``QueryTextClassifier``; ``query_dims`` defaults to
            ``embed_dims``, ``text_dims`` to the encoder's.
        embed_dims: The head's hidden size C.

    Returns:
        tuple: the built encoder and classifier.
    """
    text_classifier = copy.deepcopy(dict(text_classifier))
    if text_classifier.get('type') == 'OpenCLIPTextClassifier' and text_encoder is None:
        text_encoder, text_classifier = split_legacy_text_cfg(text_classifier)
        print_log('QueryMeldHead: text_classifier=OpenCLIPTextClassifier is deprecated; split '
                  'into text_encoder=OpenCLIPTextEncoder + QueryTextClassifier',
                  logger='current', level=logging.WARNING)
    if text_encoder is None:
        raise ValueError('QueryMeldHead: text_encoder (e.g. OpenCLIPTextEncoder) is required')
    encoder = MODELS.build(text_encoder)
    text_classifier.setdefault('query_dims', embed_dims)
    text_classifier.setdefault('text_dims', int(encoder.text_dims))
    return encoder, MODELS.build(text_classifier)


def build_meld_decoder(decoder: ConfigType, embed_dims: int, num_learnable: int,
                       num_conditional: int) -> QueryMeldDecoder:
    """The query meld decoder; with one query set empty the dual-query cross-attention is off
    (nothing to meld, and no unused parameters under DDP).

    Raises:
        ValueError: the decoder's ``embed_dims`` differs from the head's.
    """
    decoder = copy.deepcopy(dict(decoder))
    decoder.pop('type', None)
    if num_learnable == 0 or num_conditional == 0:
        layer_cfg = decoder.setdefault('layer_cfg', {})
        layer_cfg['dual_attn_cfg'] = dict(layer_cfg.get('dual_attn_cfg') or {}, mode='none')
    built = QueryMeldDecoder(**decoder)
    if built.embed_dims != embed_dims:
        raise ValueError(f'QueryMeldHead: decoder embed_dims {built.embed_dims} != '
                         f'embed_dims {embed_dims}')
    return built
