"""`voxseg train --from RUN`: a fine-tune keeps its parent's network, changes only the data and the
schedule, and its run folder says where it came from and keeps what it learned from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import run_cli, train_small_run

import voxseg.config.finetune as finetune
from voxseg.config import TrainConfig
from voxseg.errors import ConfigError
from voxseg.training.lineage import reviewed_planes
from voxseg.training.run_card import describe

SPARSE = "0:ignore,1:background,2:foreground"


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """A small trained SegResNet (patch 16, loss dice, lr 3e-3) and its data."""
    return train_small_run(tmp_path_factory.mktemp("parent"))


def reviewed(labels: Path, out: Path, planes: dict[int, list[int]]) -> Path:
    """Sparse labels of every volume of `labels`: the given planes (axis -> indices) reviewed
    (1 background, 2 nucleus), every other voxel 0 (not reviewed)."""
    out.mkdir()
    for path in sorted(labels.glob("*.tif")):
        truth = tifffile.imread(path)
        sparse = np.zeros(truth.shape, np.uint8)
        for axis, indices in planes.items():
            for index in indices:
                where = (slice(None),) * axis + (index,)
                sparse[where] = np.where(truth[where] > 0, 2, 1)
        tifffile.imwrite(out / path.name, sparse)
    return out


def test_from_takes_the_parents_network_weights_and_the_finetune_schedule(parent, tmp_path):
    run, images, labels = parent
    config = TrainConfig(images=images, labels=labels, from_run=run, results=tmp_path).resolved()
    assert (config.model, config.patch_size, config.loss) == ("SegResNet", (16, 16, 16), "dice")
    assert config.weights == run / "best.pth"
    assert (config.epochs, config.samples_per_image) == (finetune.EPOCHS, finetune.SAMPLES_PER_EPOCH)
    assert config.lr == pytest.approx(3e-3 * finetune.LR_SHARE)
    chosen = TrainConfig(images=images, labels=labels, from_run=run, epochs=3, lr=1e-5).resolved()
    assert (chosen.epochs, chosen.lr) == (3, 1e-5)  # the schedule is the user's to change
    assert chosen.results == run.parent.resolve()  # beside its parent, unless --results says otherwise
    assert config.results == tmp_path.resolve()
    assert (
        TrainConfig.from_dict({"from": str(run), "images": images, "labels": labels}).resolved().from_run
        == run
    )
    again = TrainConfig(**{**config.to_dict(), "run_name": "again"}).resolved()
    assert again.model == config.model and again.weights == config.weights  # its config.yaml reloads


def test_reviewed_planes_of_a_finetune_validate_themselves(parent, tmp_path):
    """A few planes have none to spare for held-out blocks: they train and validate (the run says so);
    dense labels keep the usual split, and --val-images are the user's."""
    run, images, labels = parent
    sparse = TrainConfig(images=images, labels=labels, label_map=SPARSE, from_run=run).resolved()
    assert (sparse.val_images, sparse.val_labels) == (images, labels)
    dense = TrainConfig(images=images, labels=labels, from_run=run).resolved()
    assert dense.val_images is None
    given = TrainConfig(
        images=images, labels=labels, label_map=SPARSE, from_run=run, val_images=tmp_path, val_labels=tmp_path
    ).resolved()
    assert given.val_images == tmp_path


@pytest.mark.parametrize(
    ("changed", "named"),
    [
        ({"model": "VNet"}, "--model"),
        ({"patch_size": 32}, "--patch-size"),
        ({"loss": "focal"}, "--loss"),
        ({"weights": "other.pth"}, "--weights"),
        ({"pretrained": True}, "--pretrained"),
    ],
)
def test_from_refuses_to_change_the_network(parent, changed, named):
    run, images, labels = parent
    with pytest.raises(ConfigError, match=named):
        TrainConfig(images=images, labels=labels, from_run=run, **changed).resolved()


def test_from_a_folder_that_is_no_finished_run_is_refused(tmp_path, parent):
    _, images, labels = parent
    with pytest.raises(ConfigError, match=r"--from: .* is not a finished voxseg run \(config.yaml"):
        TrainConfig(images=images, labels=labels, from_run=tmp_path).resolved()
    assert run_cli(["train", "--from", tmp_path, "--images", images, "--labels", labels]) == 2


def test_reviewed_planes_are_the_planes_annotated_whole():
    label = np.full((6, 5, 4), 2, np.uint8)  # 2: IGNORED
    label[1], label[4] = 0, 1
    label[:, :, 3] = 0
    label[2, 2, 2] = 1  # a stroke: no whole plane
    assert reviewed_planes(label) == {"Z": [1, 4], "X": [3]}


def test_a_cli_finetune_on_reviewed_planes_records_its_lineage_and_keeps_its_inputs(parent, tmp_path, capsys):
    run, images, labels = parent
    sparse = reviewed(labels, tmp_path / "sparse", {0: [4, 12], 2: [7]})
    results = tmp_path / "results"
    args = ["--images", images, "--labels", sparse, "--label-map", SPARSE, "--results", results]
    quick = ["--epochs", "1", "--samples-per-image", "2", "--device", "cpu", "--workers", "0", "--no-augment"]
    assert run_cli(["train", "--from", run, *args, "--run-name", "round1", *quick]) == 0
    child = results / "round1"
    card = json.loads((child / "run.json").read_text())
    assert card["lineage"]["parent"]["run"] == str(run)
    assert (
        card["lineage"]["parent"]["best_val_dice"]
        == json.loads((run / "summary.json").read_text())["best_val_dice"]
    )
    annotated = card["lineage"]["annotated"]
    assert len(annotated) == len(list(sparse.iterdir()))  # each file once, though it validates too
    assert all(v["planes"] == {"Z": [4, 12], "X": [7]} for v in annotated)
    kept = {"images": "inputs/images", "labels": "inputs/labels"}
    assert card["lineage"]["inputs"] == {**kept, "val_images": kept["images"], "val_labels": kept["labels"]}
    kept = sorted(p.name for p in (child / "inputs" / "labels").iterdir())
    assert kept == sorted(p.name for p in sparse.iterdir())
    assert (child / "inputs" / "images").is_dir()
    assert card["options"]["from_run"] == str(run) and card["options"]["model"] == "SegResNet"
    shown = describe(child)
    assert f"parent    {run}" in shown and "reviewed " in shown and "Z 4, 12; X 7" in shown
    assert "validated on its own training labels (optimistic" in shown
    assert "status    completed (all 1 epoch(s) trained); " in shown
    assert "the training labels themselves: its Dice is optimistic" in (child / "train.log").read_text()
    radius = json.loads((run / "summary.json").read_text())["object_radius"]
    assert json.loads((child / "summary.json").read_text())["object_radius"] == radius  # not the planes' own
    # the round again, from its own folder alone (as `voxseg info` says)
    again = [
        "train", "--config", child / "config.yaml", "--images", child / "inputs" / "images",
        "--labels", child / "inputs" / "labels", "--run-name", "again", *quick,
    ]  # fmt: skip
    assert run_cli(again) == 0
    assert json.loads((results / "again" / "run.json").read_text())["lineage"]["parent"]["run"] == str(run)
