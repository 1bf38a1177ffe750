"""Training from real microscopy formats: TIFF, Zarr and HDF5 alike, volumes larger than memory read
patch by patch, voxel size in the run card, sparse labels, isotropic resampling, and clear errors."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import zarr
from conftest import run_cli, synthetic_volume, write_dataset

import voxseg
from voxseg.data.labels import IGNORED
from voxseg.errors import DataError
from voxseg.training.setup import prepare_run


def _copy_as(images: Path, labels: Path, root: Path, fmt: str) -> tuple[Path, Path]:
    """The TIFF dataset rewritten as Zarr or HDF5 (chunked, as large data is stored)."""
    out = {}
    for kind, folder in (("images", images), ("labels", labels)):
        target = root / fmt / kind
        target.mkdir(parents=True)
        for tif in sorted(folder.glob("*.tif")):
            array = tifffile.imread(tif)
            if fmt == "zarr":
                z = zarr.open_array(
                    target / f"{tif.stem}.zarr", mode="w", shape=array.shape, dtype=array.dtype
                )
                z[...] = array
            else:
                with h5py.File(target / f"{tif.stem}.h5", "w") as handle:
                    handle.create_dataset("data", data=array, chunks=(8, 8, 8))
        out[kind] = target
    return out["images"], out["labels"]


def test_tiff_zarr_and_hdf5_train_the_same(tmp_path: Path, fast_config) -> None:
    """The same volumes in three formats give the same run: same losses, same validation Dice."""
    images, labels = write_dataset(tmp_path / "tif", n=3, size=24)
    results = {}
    for fmt in ("tif", "zarr", "h5"):
        pair = (images, labels) if fmt == "tif" else _copy_as(images, labels, tmp_path, fmt)
        config = fast_config(*pair, run_name=fmt, epochs=2, samples_per_image=2)
        summary = voxseg.train(config, progress=False).summary
        results[fmt] = (summary["best_val_dice"], summary["patches_seen"])
    assert results["tif"] == results["zarr"] == results["h5"]


def test_a_channel_of_hyperstacks_trains_as_that_channel_alone(tmp_path: Path, fast_config) -> None:
    """Fiji's 2-channel stacks with --channel 1 give the same run as the channel saved alone."""
    images, labels = write_dataset(tmp_path / "tif", n=3, size=24)
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    for tif in images.glob("*.tif"):
        image = tifffile.imread(tif)
        both = np.stack([image[::-1].copy(), image], axis=1)  # another stain first
        tifffile.imwrite(stacks / tif.name, both, imagej=True, metadata={"axes": "ZCYX"})
    with pytest.raises(DataError, match="2 channels on axis 1 .*give --channel N"):
        voxseg.train(fast_config(stacks, labels, run_name="none", epochs=1), progress=False)
    runs = {}
    for name, folder, channel in (("alone", images, None), ("stacked", stacks, 1)):
        config = fast_config(folder, labels, run_name=name, epochs=2, samples_per_image=2, channel=channel)
        summary = voxseg.train(config, progress=False).summary
        runs[name] = (summary["best_val_dice"], summary["patches_seen"])
    assert runs["alone"] == runs["stacked"]


def test_labels_named_otherwise_pair_by_the_pattern_the_error_suggests(
    tmp_path: Path, fast_args, capsys: pytest.CaptureFixture[str]
) -> None:
    images, labels = write_dataset(tmp_path / "d", n=3, size=16)
    for label in labels.glob("*.tif"):
        label.rename(labels / f"mask_{label.name.replace('_label', '')}")  # vol_00.tif -> mask_vol_00.tif
    results = tmp_path / "results"
    assert run_cli([*fast_args(images, labels, results), "--epochs", "1"]) == 2
    assert "--label-name 'mask_{name}'" in capsys.readouterr().err and not results.exists()
    argv = [*fast_args(images, labels, results), "--epochs", "1", "--label-name", "mask_{name}"]
    assert run_cli(argv) == 0


def test_a_folder_may_mix_formats(tmp_path: Path, fast_config) -> None:
    images, labels = write_dataset(tmp_path / "tif", n=3, size=24)
    zarr_images, _ = _copy_as(images, labels, tmp_path, "zarr")
    (images / "vol_01.tif").unlink()
    (zarr_images / "vol_01.zarr").rename(images / "vol_01.zarr")
    prepared = prepare_run(fast_config(images, labels))
    assert len(prepared.train_volumes) + len(prepared.val_volumes) == 3


def _write_large_zarr(path: Path, shape: tuple[int, int, int], label: bool) -> None:
    """A mostly empty volume with a bright block, written chunk by chunk (never whole in memory)."""
    array = zarr.open_array(path, mode="w", shape=shape, dtype=np.uint8, chunks=(16, 128, 128), fill_value=0)
    z0, z1 = shape[0] // 2 - 8, shape[0] // 2 + 8
    block = np.zeros((z1 - z0, 64, 64), np.uint8)
    block[:] = 1 if label else 200
    array[z0:z1, 100:164, 100:164] = block
    if not label:
        rng = np.random.default_rng(0)
        array[0:16, :, :] = rng.integers(0, 50, (16, *shape[1:]), dtype=np.uint8)


def test_a_zarr_volume_larger_than_the_memory_budget_trains_from_patches(
    tmp_path: Path, fast_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 512³ volume (134 MB as stored, 537 MB as float32) with a 16 MB budget is never read whole:
    traced allocations peak below even its stored size, and its patches come from disk."""
    shape = (512, 512, 512)
    images, labels = tmp_path / "big" / "images", tmp_path / "big" / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    _write_large_zarr(images / "big.zarr", shape, label=False)
    _write_large_zarr(labels / "big.zarr", shape, label=True)
    val_images, val_labels = write_dataset(tmp_path / "val", n=1, size=32)
    monkeypatch.setattr("voxseg.training.setup.memory_budget", lambda: 16 * 2**20)
    monkeypatch.setattr("voxseg.data.checks.SLAB_VOXELS", 2_000_000)  # the checks' slabs: 2 MB
    config = fast_config(
        images, labels, val_images=val_images, val_labels=val_labels, patch_size=32, samples_per_image=4
    )
    tracemalloc.start()
    try:
        result = voxseg.train(config, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    stored_bytes = int(np.prod(shape))  # uint8
    assert result.summary["status"] == "completed"
    assert peak < stored_bytes, f"peak {peak / 2**20:.0f} MB"
    log = (result.run_dir / "train.log").read_text()
    assert "big.zarr" in log and "read patch by patch from disk" in log


def test_voxel_size_reaches_the_run_card(tmp_path: Path, fast_config) -> None:
    images, labels = write_dataset(tmp_path / "d", n=2, size=24)
    for tif in images.glob("*.tif"):  # ImageJ hyperstacks as Fiji saves them: 2 µm planes, 0.5 µm pixels
        tifffile.imwrite(
            tif,
            tifffile.imread(tif),
            imagej=True,
            resolution=(2.0, 2.0),
            metadata={"spacing": 2.0, "unit": "um"},
        )
    run = voxseg.train(fast_config(images, labels), progress=False).run_dir
    card = json.loads((run / "run.json").read_text())
    assert card["voxel_size_um"] == [2.0, 0.5, 0.5]
    images_in = [i for i in card["inputs"] if i["role"].endswith("image")]
    assert all(i["voxel_size_um"] == [2.0, 0.5, 0.5] for i in images_in)
    assert "voxel size: 2 × 0.5 × 0.5 µm" in (run / "train.log").read_text()


def test_spacing_overrides_the_metadata(tmp_path: Path, fast_config) -> None:
    images, labels = write_dataset(tmp_path / "d", n=2, size=24)
    prepared = prepare_run(fast_config(images, labels, spacing=(3.0, 1.0, 1.0)))
    assert prepared.voxel_size == (3.0, 1.0, 1.0)


def _sparse_labels(labels: Path, target: Path, planes: tuple[int, ...]) -> Path:
    """TRAILMAP's convention: 0 not annotated, 1 background, 2 cell; only `planes` annotated."""
    target.mkdir(parents=True)
    for tif in labels.glob("*.tif"):
        full = np.where(tifffile.imread(tif) > 0, 2, 1).astype(np.uint8)
        sparse = np.zeros_like(full)
        sparse[list(planes)] = full[list(planes)]
        tifffile.imwrite(target / tif.name, sparse)
    return target


def test_sparse_labels_leave_unannotated_voxels_out(tmp_path: Path, fast_config) -> None:
    images, labels = write_dataset(tmp_path / "d", n=3, size=24)
    sparse = _sparse_labels(labels, tmp_path / "sparse", (4, 12, 20))
    config = fast_config(
        images, sparse, label_map="0:ignore,1:background,2:foreground", epochs=2, loss="auto"
    )
    prepared = prepare_run(config)
    assert prepared.sparse and prepared.config.loss == "focal"  # auto: a voxel loss for sparse labels
    label = np.asarray(prepared.train_volumes[0].label)
    assert set(np.unique(label)) == {0, 1, IGNORED}
    assert (label[12] != IGNORED).all() and (label[11] == IGNORED).all()
    result = voxseg.train(config, progress=False)
    assert result.summary["status"] == "completed" and np.isfinite(result.summary["best_val_dice"])


def test_ignore_label_is_short_for_a_map(tmp_path: Path, fast_config) -> None:
    images, labels = write_dataset(tmp_path / "d", n=2, size=24)
    sparse = _sparse_labels(labels, tmp_path / "sparse", (4, 12))
    prepared = prepare_run(fast_config(images, sparse, ignore_label=0, label_map="1:background,2:foreground"))
    assert prepared.sparse


def test_a_label_without_any_annotated_voxel_is_refused(tmp_path: Path, fast_config) -> None:
    images, labels = write_dataset(tmp_path / "d", n=2, size=24)
    sparse = _sparse_labels(labels, tmp_path / "sparse", (4,))
    tifffile.imwrite(sparse / "vol_01_label.tif", np.zeros((24, 24, 24), np.uint8))
    with pytest.raises(DataError, match="vol_01_label.tif: no voxel is annotated"):
        prepare_run(fast_config(images, sparse, label_map="0:ignore,1:background,2:foreground"))
    assert not (tmp_path / "results").exists()


def test_resample_isotropic_trains_on_cubic_voxels(tmp_path: Path, fast_config) -> None:
    images, labels = write_dataset(tmp_path / "d", n=3, size=(12, 32, 32))  # whole volumes validate
    config = fast_config(images, labels, spacing=(2.0, 1.0, 1.0), resample="isotropic", train_fraction=0.5)
    prepared = prepare_run(config)
    assert prepared.voxel_size == (1.0, 1.0, 1.0)
    assert {v.shape for v in prepared.train_volumes + prepared.val_volumes} == {(24, 32, 32)}
    label = prepared.train_volumes[0].label
    assert set(np.unique(label)) <= {0, 1}  # nearest neighbour: classes stay classes


def test_resample_isotropic_needs_a_voxel_size(tmp_path: Path, fast_config) -> None:
    images, labels = write_dataset(tmp_path / "d", n=2, size=16)
    with pytest.raises(DataError, match="no voxel size.*--spacing"):
        prepare_run(fast_config(images, labels, resample="isotropic"))


def _two_dataset_h5(path: Path) -> None:
    image, _ = synthetic_volume(16)
    with h5py.File(path, "w") as handle:
        handle["raw"] = image
        handle["smoothed"] = image


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "holds several datasets (raw, smoothed)"),
        (["--image-key", "missing"], "has no dataset 'missing'"),
        (["--image-key", "flat"], "not a 3D volume"),
        (["--level", "2"], "has no multiscale level 2"),
    ],
)
def test_bad_format_inputs_exit_2_and_write_nothing(
    tmp_path: Path, fast_args, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    images, labels = write_dataset(tmp_path / "d", n=2, size=16)
    for tif in images.glob("*.tif"):
        _two_dataset_h5(tif.with_suffix(".h5"))
        with h5py.File(tif.with_suffix(".h5"), "a") as handle:
            handle["flat"] = np.zeros((16, 16), np.float32)
        tif.unlink()
    results = tmp_path / "results"
    code = run_cli([*fast_args(images, labels, results), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and str(images / "vol_00.h5") in err
    assert not results.exists()
