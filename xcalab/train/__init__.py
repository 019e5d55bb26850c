"""Training: targets, losses, optimisation and the loop of the detector (ActionFormer's recipe, kept by STA-IPCon).

- ``assign``       which pyramid point learns which action: centre sampling and regression ranges (ActionFormer's)
- ``losses``       sigmoid focal loss, 1-D DIoU loss, the moving-average normaliser and the loss of one
                   training step (ActionFormer's)
- ``optim``        AdamW with the reference's decay groups, warm-up + cosine per iteration, model EMA
- ``distributed``  several processes under torchrun: collectives with gradients, global BatchNorm
- ``checkpoint``   the run's files: checkpoints, weights, RNG states, the run log and lock, the resume check
- ``loop``         ``train()``: build, resume, one epoch, select and save (the extension point: ``DetectionTask``)

The training crops live with the dataset (``xcalab.data.crops``); ``predict`` / ``evaluate`` in
``xcalab.inference``; the ``xcalab train`` command in ``xcalab.cli``.

Shapes: points of all pyramid levels are concatenated level by level (P = sum of the level lengths);
head outputs [B, C, T_l] become [B, P, C] with ``concat_levels``; masks are bool, True at valid points.
"""

from xcalab.train.assign import (
    DEFAULT_STRIDES,
    AssignedTargets,
    PyramidPoints,
    assign_targets,
    concat_levels,
    pyramid_points,
)
from xcalab.train.losses import LossNormaliser, detection_losses, diou_loss_1d, sigmoid_focal_loss

__all__ = [
    "DEFAULT_STRIDES",
    "AssignedTargets",
    "LossNormaliser",
    "PyramidPoints",
    "assign_targets",
    "concat_levels",
    "detection_losses",
    "diou_loss_1d",
    "pyramid_points",
    "sigmoid_focal_loss",
]
