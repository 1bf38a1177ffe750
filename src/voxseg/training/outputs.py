"""What a run's network outputs: the foreground, and with instance labels the distance to each
nucleus's boundary (`--instance-output`, `data.distance`), decided before any data are loaded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from voxseg.data.objects import PACKED_SHARE, packed_nuclei
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
    config: TrainConfig,
    ids: bool,
    radius: float | None,
    pairs: Sequence[Pair],
    initial_state: dict[str, torch.Tensor] | None,
) -> tuple[str, str]:
    """(`distance` or `none`, the log's note why). `auto` gives `distance` when the labels hold
    instance ids (`ids`) of packed nuclei (a share within a quarter `radius` of another,
    `data.objects.packed_share`) and the starting weights (`--weights`, `--pretrained`, `--from`), if
    any, have the distance output: their shape fixes the network's. Starting weights with it keep it
    even where the labels hold no ids (reviewed planes): then only the foreground trains.

    Nuclei apart need no second output: their mask's components part them, and it costs the
    foreground (acceptance 12, QCANet's embryos, none within a quarter radius of another: mean Dice
    0.880 without it, 0.876 with it; F1 1.0 either way)."""
    asked = config.instance_output
    start = None if initial_state is None else output_channels(config.model, initial_state)
    if get_model_spec(config.model).self_supervised or config.labels is None:
        if asked == "distance":
            raise ConfigError("--instance-output distance: needs labels with one id per nucleus (--labels)")
        return "none", ""
    with_distance = len(OUTPUTS["distance"])
    kept = "; the labels hold no ids, so only the foreground trains" if not ids else ""
    if asked == "distance" and not ids and start != with_distance:
        raise ConfigError("--instance-output distance: the labels hold no instance ids (one id per nucleus)")
    if asked != AUTO:
        if start is not None and start != len(OUTPUTS[asked]):
            raise ConfigError(
                f"--instance-output {asked}: the starting weights have {start} output(s), this needs "
                f"{len(OUTPUTS[asked])}; leave --instance-output at auto to follow them"
            )
        return asked, f"instance output: {asked} (--instance-output{kept if asked == 'distance' else ''})"
    if start is not None:
        chosen = "distance" if start == with_distance else "none"
        why = kept if start == with_distance else ""
        return chosen, f"instance output: {chosen} (auto: as the starting weights{why})"
    packed = packed_nuclei(pairs, config.reading(), radius) if ids else 0.0
    if ids and packed >= PACKED_SHARE:
        return "distance", (
            f"instance output: distance (auto: the labels hold instance ids, {packed:.0%} of the nuclei "
            "within a quarter radius of another; the network also learns each nucleus's distance to its "
            "boundary, which predict --instances auto parts touching nuclei by)"
        )
    if ids:
        return "none", (
            f"instance output: none (auto: the nuclei are apart, {packed:.0%} within a quarter radius of "
            "another: their mask's components part them)"
        )
    return "none", "instance output: none (auto: the labels are a mask, not one id per nucleus)"
