"""What a run's network outputs: the foreground, and with instance labels the distance to each
nucleus's boundary (`--instance-output`, `data.distance`), decided before any data are loaded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from voxseg.errors import ConfigError
from voxseg.models.registry import OUTPUT_NAMES, get_model_spec, output_channels
from voxseg.options import AUTO

if TYPE_CHECKING:
    import torch

    from voxseg.config import TrainConfig
    from voxseg.data.discovery import Pair

#: the network's outputs for each `--instance-output`, in channel order
OUTPUTS = {"none": OUTPUT_NAMES[:1], "distance": OUTPUT_NAMES[:2]}


def resolve_instance_output(
    config: TrainConfig, pairs: Sequence[Pair], initial_state: dict[str, torch.Tensor] | None
) -> tuple[str, str]:
    """(`distance` or `none`, the log's note why). `auto` gives `distance` when the labels hold
    instance ids and the starting weights (`--weights`, `--pretrained`, `--from`), if any, have the
    distance output: their shape fixes the network's."""
    from voxseg.data.objects import holds_instance_ids

    asked = config.instance_output
    start = None if initial_state is None else output_channels(config.model, initial_state)
    if get_model_spec(config.model).self_supervised or config.labels is None:
        if asked == "distance":
            raise ConfigError("--instance-output distance: needs labels with one id per nucleus (--labels)")
        return "none", ""
    if asked != AUTO:
        if start is not None and start != len(OUTPUTS[asked]):
            raise ConfigError(
                f"--instance-output {asked}: the starting weights have {start} output(s), this needs "
                f"{len(OUTPUTS[asked])}; leave --instance-output at auto to follow them"
            )
        return asked, f"instance output: {asked} (--instance-output)"
    if start is not None:
        chosen = "distance" if start == len(OUTPUTS["distance"]) else "none"
        return chosen, f"instance output: {chosen} (auto: as the starting weights)"
    if holds_instance_ids(pairs, config.reading()):
        return "distance", (
            "instance output: distance (auto: the labels hold instance ids; the network also learns each "
            "nucleus's distance to its boundary, and predict --instances auto seeds from it)"
        )
    return "none", "instance output: none (auto: the labels are a mask, not one id per nucleus)"
