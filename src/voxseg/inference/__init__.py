"""Applying a network to whole volumes: sliding-window prediction and the Dice metric."""

from voxseg.inference.sliding import dice_score, predict_logits

__all__ = ["dice_score", "predict_logits"]
