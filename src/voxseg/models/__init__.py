"""Networks by name, each with the input-size rule that padding and validation rely on."""

from voxseg.models.registry import MODELS, ModelSpec, build_model, get_model_spec, resolve_model_name

__all__ = ["MODELS", "ModelSpec", "build_model", "get_model_spec", "resolve_model_name"]
