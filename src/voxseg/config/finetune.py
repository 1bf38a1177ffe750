"""`voxseg train --from RUN`: a fine-tune takes its parent run's network whole and changes only the data
and the schedule.

What the parent fixes (`INHERITED`) is read from its config.yaml and may not be given otherwise, as
with `--resume`; its best.pth is the starting point. The schedule's `auto` values become the
fine-tune's, measured on a model of one QCANet embryo corrected on 3 planes of the other
(docs/finetune.md). No torch here: a wrong run folder is answered before anything heavy loads.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from voxseg.data.labels import LabelMap
from voxseg.errors import ConfigError
from voxseg.models.registry import get_model_spec
from voxseg.options import AUTO

#: what a fine-tune keeps from its parent: the network, its input window, how voxels are read into it,
#: and what it was trained to minimise (the threshold it was tuned for depends on that)
INHERITED = (
    "model",
    "patch_size",
    "pad_pow2",
    "resample",
    "loss",
    "classes",
    "ncut_weight",
    "reconstruction_weight",
    "partition_weight",
    "ncut_radius",
    "ncut_sigma_i",
    "ncut_sigma_x",
)
#: the fine-tune's schedule where the options say `auto` (docs/finetune.md: 64 patches at a 30th of the
#: parent's rate changed nothing on the planes not reviewed, where 160 at a tenth lost 0.018 of Dice)
EPOCHS = 8
SAMPLES_PER_EPOCH = 8
LR_SHARE = 1 / 30  # of the parent's learning rate
WEIGHTS = "best.pth"


def parent_options(run: Path) -> dict[str, Any]:
    """The parent run's options as its config.yaml holds them (resolved when it was written)."""
    import yaml

    saved, weights = run / "config.yaml", run / WEIGHTS
    if not saved.is_file() or not weights.is_file():
        missing = saved if not saved.is_file() else weights
        raise ConfigError(f"--from: {run} is not a finished voxseg run ({missing.name} is missing)")
    try:
        options = yaml.safe_load(saved.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"--from: cannot read {saved}: {exc}".splitlines()[0]) from None
    if not isinstance(options, dict):
        raise ConfigError(f"--from: {saved} holds no options")
    return options


def inherit(
    values: dict[str, Any],
    defaults: dict[str, Any],
    parse: Callable[[str, Any], Any],
    spelled: Callable[[str], str],
) -> None:
    """Fill `values` (parsed options, `from_run` set) from the parent run, in place.

    `defaults` are the options' defaults (a value equal to its default was not chosen), `parse`
    normalises a value of the parent's config.yaml, `spelled` names an option as typed.
    """
    run = values["from_run"]
    parent = parent_options(run)
    for name in INHERITED:
        theirs = parse(name, parent.get(name, defaults[name]))
        ours = values[name]
        if ours not in (defaults[name], theirs):
            raise ConfigError(
                f"{spelled(name)}: --from fine-tunes {run.name}'s network as it is ({name.replace('_', ' ')} "
                f"{_shown(theirs)}); leave {spelled(name)} out, or train a new run without --from"
            )
        values[name] = theirs
    weights = run / WEIGHTS
    if values["pretrained"] or values["weights"] not in (None, weights):
        raise ConfigError(f"--from starts from {weights}; leave out --weights and --pretrained")
    values["weights"] = weights
    if values["results"] in (defaults["results"], Path(defaults["results"]).resolve()):  # not given:
        # the child lands beside its parent
        values["results"] = run.parent
    if (
        values["val_images"] is None
        and LabelMap.parse(values["label_map"], values["ignore_label"]).has_ignored
    ):
        # a few reviewed planes have none to spare: they validate too (optimistic; the log says so)
        values["val_images"], values["val_labels"] = values["images"], values["labels"]
    if values["epochs"] == AUTO:
        values["epochs"] = EPOCHS
    if values["samples_per_image"] == AUTO:
        values["samples_per_image"] = SAMPLES_PER_EPOCH
    if values["lr"] == AUTO:
        parent_lr = parent.get("lr", AUTO)
        values["lr"] = LR_SHARE * (
            get_model_spec(values["model"]).lr if parent_lr == AUTO else float(parent_lr)
        )


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
