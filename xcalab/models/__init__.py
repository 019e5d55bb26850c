"""The STA-IPCon model, one module per idea, in the order the features flow (seed paper Sec. III):

- ``convlstm``     ConvLSTM, the recurrence behind temporal attention (eq. 1)
- ``long_term``    long-term attention: TA, SA, STA and the gate X * (1 + A) (eqs. 5-6)
- ``contrastive``  imagewise contrast with the soft-nearest-neighbour loss (eqs. 9-10) and the
                   patchwise projection (Sec. III-F)
- ``short_term``   temporal-conv embedding and the local-attention transformer pyramid (eqs. 7-8)
- ``heads``        classification and boundary-regression heads (Sec. III-G)
- ``maps``         ``MapKind``: what every captured attention map is (its kind and value range)
- ``detector``     the keyframe detector that puts them together, every ablation a switch

and the other seed papers' modules, each a switch of the detector:

- ``generative_attention``       GAF: the frame attention lambda and its conditional VAE (seed 002)
- ``self_attention_refinement``  TSA + TPP: attention refined by class agreement and interval overlap (seed 003)
- ``sparse_spatial_attention``   class-peak sparse spatial attention and a temporal CNN: the contrast-phase
                                 recogniser (seed 004)

Shapes: features are (B, 4096, T), one row-major 64 x 64 map per step; masks are (B, T) bool with
True at valid steps (videos are left-aligned and right-padded).
"""

from xcalab.models.contrastive import (
    ContrastOutput,
    ImagewiseContrast,
    PatchwiseOutput,
    PatchwiseProjection,
    foreground_background,
    patchwise_projection,
    sample_near_apex,
    soft_nearest_neighbour_loss,
)
from xcalab.models.convlstm import ConvLSTM, ConvLSTMCell
from xcalab.models.generative_attention import ConditionalVAE, FrameAttention, GenerativeAttention
from xcalab.models.heads import ClassificationHead, RegressionHead, Scale
from xcalab.models.long_term import LongTermAttention, LongTermOutput, SpatialAttention
from xcalab.models.maps import UNIT_RANGE, MapKind
from xcalab.models.self_attention_refinement import SelfAttentionRefinement, TemporalPyramidPooling
from xcalab.models.short_term import (
    AffineDropPath,
    ChannelLayerNorm,
    LocalMultiHeadAttention,
    MaskedConv1d,
    PyramidOutput,
    TemporalConvEmbedding,
    TransformerBlock,
    TransformerPyramid,
    local_attention,
)
from xcalab.models.sparse_spatial_attention import PhaseRecogniser, TemporalAttentionCNN

__all__ = [
    "UNIT_RANGE",
    "AffineDropPath",
    "ChannelLayerNorm",
    "ClassificationHead",
    "ContrastOutput",
    "ConvLSTM",
    "ConvLSTMCell",
    "ConditionalVAE",
    "FrameAttention",
    "GenerativeAttention",
    "ImagewiseContrast",
    "LocalMultiHeadAttention",
    "LongTermAttention",
    "LongTermOutput",
    "MapKind",
    "MaskedConv1d",
    "PatchwiseOutput",
    "PatchwiseProjection",
    "PhaseRecogniser",
    "PyramidOutput",
    "RegressionHead",
    "Scale",
    "SelfAttentionRefinement",
    "SpatialAttention",
    "TemporalAttentionCNN",
    "TemporalConvEmbedding",
    "TemporalPyramidPooling",
    "TransformerBlock",
    "TransformerPyramid",
    "foreground_background",
    "local_attention",
    "patchwise_projection",
    "sample_near_apex",
    "soft_nearest_neighbour_loss",
]
