"""Procedural data for training and measuring small segmentation models offline (numpy only).

`segcost.data.tiny_model` (the matching PyTorch model and training loop) needs torch
and is deliberately not imported here.
"""

from segcost.data.synthetic import (
    CLASS_NAMES,
    MEAN,
    STD,
    SyntheticShapes,
    class_iou,
    confusion_matrix,
    miou,
    miou_from_confusion,
    normalize,
)

__all__ = ["CLASS_NAMES", "MEAN", "STD", "SyntheticShapes", "class_iou", "confusion_matrix", "miou",
           "miou_from_confusion", "normalize"]
