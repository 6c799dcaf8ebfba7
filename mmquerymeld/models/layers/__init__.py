"""Building blocks of QueryMeldNet: pixel decoder, query selection, denoising, decoder."""
from .denoising import OpenVocabDenoisingGenerator, build_dn_attn_mask
from .fp32_deform_attn import Fp32MultiScaleDeformableAttention, build_fp32_deform_attn
from .pixel_decoder import QueryMeldPixelDecoder
from .query_meld_decoder import (DUAL_ATTN_MODES, DualQueryCrossAttention, QueryMeldDecoder,
                                 QueryMeldDecoderLayer)
from .query_selection import (ConditionalQueryGenerator, encoder_output_proposals,
                              masks_to_anchor_logits)

__all__ = [
    'QueryMeldPixelDecoder', 'ConditionalQueryGenerator', 'encoder_output_proposals',
    'masks_to_anchor_logits', 'OpenVocabDenoisingGenerator', 'build_dn_attn_mask',
    'DualQueryCrossAttention', 'QueryMeldDecoderLayer', 'QueryMeldDecoder', 'DUAL_ATTN_MODES',
    'Fp32MultiScaleDeformableAttention', 'build_fp32_deform_attn'
]
