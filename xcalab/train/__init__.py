"""Training: targets, losses and crops of the detector (ActionFormer's recipe, kept by STA-IPCon).

- ``assign``  which pyramid point learns which action: centre sampling and regression ranges (spec Sec. 3.7)
- ``losses``  sigmoid focal loss, 1-D DIoU loss and the moving-average normaliser (spec Sec. 3.8)
- ``crops``   the reference's random training crops of a feature sequence (spec Sec. 2.4)
- ``optim``   AdamW with the reference's decay groups, warm-up + cosine per iteration, model EMA (Sec. 3.10)
- ``engine``  the training loop (checkpoints, exact resume, EMA model selection, DDP under torchrun),
              ``predict`` / ``evaluate`` / ``load_detector``, and the ``xcalab train`` command

Shapes: points of all pyramid levels are concatenated level by level (P = sum of the level lengths);
head outputs [B, C, T_l] become [B, P, C] with ``concat_levels``; masks are bool, True at valid points.
"""

from xcalab.train.assign import (
    CENTER_RADIUS,
    DEFAULT_REGRESSION_RANGES,
    DEFAULT_STRIDES,
    AssignedTargets,
    PyramidPoints,
    assign_targets,
    concat_levels,
    pyramid_points,
)
from xcalab.train.crops import Crop, crop_window, truncate_features
from xcalab.train.losses import LossNormaliser, detection_losses, diou_loss_1d, sigmoid_focal_loss

__all__ = [
    "CENTER_RADIUS",
    "DEFAULT_REGRESSION_RANGES",
    "DEFAULT_STRIDES",
    "AssignedTargets",
    "Crop",
    "LossNormaliser",
    "PyramidPoints",
    "assign_targets",
    "concat_levels",
    "crop_window",
    "detection_losses",
    "diou_loss_1d",
    "pyramid_points",
    "sigmoid_focal_loss",
    "truncate_features",
]
