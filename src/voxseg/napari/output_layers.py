"""Layers a widget makes and updates on its next run: placed like the image they come from, their data
replaced in place (the user's view, colours and position kept), never a layer the user made under the
same name (napari numbers a new one instead)."""

from __future__ import annotations

from typing import Any

import numpy as np

#: `layer.metadata[OWNER_KEY]` says which output of which widget a layer is
OWNER_KEY = "voxseg_output"
#: how a probability (0–1) is drawn over its image
PROBABILITY_STYLE = {"colormap": "magenta", "blending": "additive", "contrast_limits": (0.0, 1.0)}


def is_output(layer: Any) -> bool:
    """Whether a widget made this layer (an output is not offered as an input)."""
    return OWNER_KEY in layer.metadata


def own_layer(viewer: Any, name: str, owner: str) -> Any:
    """The layer `owner` made under that name, if it is still there."""
    if name not in viewer.layers:
        return None
    layer = viewer.layers[name]
    return layer if layer.metadata.get(OWNER_KEY) == owner else None


def put_layer(
    viewer: Any, name: str, owner: str, data: np.ndarray, place: dict[str, Any], labels: bool, **style: Any
) -> Any:
    """Replace the data of `owner`'s layer of that name, or add one (a Labels layer when `labels`);
    `place` holds napari's scale and translate. Returns the layer."""
    layer = own_layer(viewer, name, owner)
    if layer is not None:
        layer.data = data
        layer.scale, layer.translate = place["scale"], place["translate"]
        if "contrast_limits" in style:
            layer.contrast_limits = style["contrast_limits"]
        return layer
    add = viewer.add_labels if labels else viewer.add_image
    return add(data, name=name, metadata={OWNER_KEY: owner}, **place, **style)
