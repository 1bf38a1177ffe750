"""Trained models for pipelines without voxseg: TorchScript and ONNX, each checked after writing."""
