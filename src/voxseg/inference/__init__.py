"""Applying a network: sliding-window prediction (whole or streamed), instances, metrics, evaluation.

Nothing is imported here, so `voxseg predict` and `voxseg evaluate` check their options and files
before torch and MONAI load.
"""
