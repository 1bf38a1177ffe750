"""A volume predicted in blocks by one process: stopped, it keeps its finished blocks in a journal;
`--resume` checks them, computes only the rest, and writes what an uninterrupted run writes."""

from __future__ import annotations

import filecmp
import logging
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from conftest import run_cli, synthetic_volume, train_small_run

from voxseg.config import PredictConfig
from voxseg.errors import ConfigError, DataError, Stopped
from voxseg.inference.job import blocks
from voxseg.inference.job.files import predict_files
from voxseg.inference.job.journal import PREFIX, Journal
from voxseg.inference.model.predictor import Predictor


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_small_run(tmp_path_factory.mktemp("trained"))[0]


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    image, _ = synthetic_volume((48, 40, 40), cells=12, seed=4)
    path = tmp_path / "in" / "vol.zarr"
    zarr.open_array(str(path), mode="w", shape=image.shape, chunks=(16, 40, 40), dtype=image.dtype)[:] = image
    return path


@pytest.fixture(autouse=True)
def small_units(monkeypatch) -> None:
    monkeypatch.setattr(blocks, "UNIT_PLANES", 8)  # 6 units, 1 slab of instances per 2 units
    monkeypatch.setattr(blocks, "SLAB_VOXELS", 16 * 40 * 40)


def _config(trained: Path, volume: Path, output: Path, **options) -> PredictConfig:
    defaults = {"instances": "connected", "save_probabilities": True, "threads": 1}
    return PredictConfig.from_dict(
        {"source": trained, "input": [volume], "output": output, **defaults, **options}
    ).resolved()


def _windows(config: PredictConfig, stop_after: int | None = None, written: list | None = None) -> int:
    """Windows computed by predict_files (stopping once `stop_after` are done); what it returns is
    added to `written`."""
    stop = threading.Event()
    counted = {"done": 0}

    def progress(name: str, done: int, total: int) -> None:
        counted["done"] = done
        if stop_after is not None and done >= stop_after:
            stop.set()

    (written if written is not None else []).extend(predict_files(config, progress, stop))
    return counted["done"]


def _same_outputs(a: Path, b: Path) -> None:
    for kind in ("mask", "labels", "prob"):
        np.testing.assert_array_equal(
            zarr.open(str(a / f"vol_{kind}.zarr"))["0"][:], zarr.open(str(b / f"vol_{kind}.zarr"))["0"][:]
        )
    assert filecmp.cmp(a / "vol_objects.csv", b / "vol_objects.csv", shallow=False)


def test_a_stopped_prediction_resumes_to_the_uninterrupted_result(trained, volume, tmp_path) -> None:
    whole = _windows(_config(trained, volume, tmp_path / "whole"))
    with pytest.raises(Stopped):
        _windows(_config(trained, volume, tmp_path / "out"), stop_after=whole // 2)
    journal = Journal.of(tmp_path / "out", "vol")
    recorded = journal.records("units")
    assert 0 < len(recorded) < 6 and not (tmp_path / "out" / "vol_mask.zarr").exists()
    with pytest.raises(DataError, match=r"stopped after \d of 6 blocks.*--resume finishes it"):
        _windows(_config(trained, volume, tmp_path / "out"))
    written: list = []
    rest = _windows(_config(trained, volume, tmp_path / "out", resume=True), written=written)
    assert rest <= whole - whole // 2 + 9  # at most the row in flight (3 × 3 windows) is redone
    assert written[0].voxels == (6 - len(recorded)) * 8 * 40 * 40  # voxels/s: of this job's blocks
    _same_outputs(tmp_path / "whole", tmp_path / "out")
    assert not journal.folder.exists()
    assert _windows(_config(trained, volume, tmp_path / "out", resume=True)) == 0  # finished: skipped


def test_a_block_that_does_not_read_back_as_recorded_is_done_again(trained, volume, tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="voxseg"):
        whole = _windows(_config(trained, volume, tmp_path / "whole"))
    assert (
        "vol.zarr: no voxel size in its metadata: the µm columns of vol_objects.csv stay empty" in caplog.text
    )
    with pytest.raises(Stopped):
        _windows(_config(trained, volume, tmp_path / "out"), stop_after=whole // 2)
    journal = Journal.of(tmp_path / "out", "vol")
    z0, z1 = journal.records("units")[0]["z"]  # the first unit is finished by then
    zarr.open(str(journal / "vol_prob.zarr"))["0"][z0:z1] = 0.5  # a write cut short
    _windows(_config(trained, volume, tmp_path / "out", resume=True))
    _same_outputs(tmp_path / "whole", tmp_path / "out")


def test_resuming_with_other_settings_is_refused(trained, volume, tmp_path, monkeypatch) -> None:
    with pytest.raises(Stopped):
        _windows(_config(trained, volume, tmp_path / "out"), stop_after=1)
    with pytest.raises(ConfigError, match="threshold differ"):
        _windows(_config(trained, volume, tmp_path / "out", resume=True, threshold=0.3))
    with monkeypatch.context() as patched:  # options of the command line: refused before the model loads
        patched.setattr(Predictor, "of", lambda config: pytest.fail("the model loaded"))
        with pytest.raises(ConfigError, match="min_size, tta differ"):
            _windows(_config(trained, volume, tmp_path / "out", resume=True, tta=True, min_size=5))
    _windows(_config(trained, volume, tmp_path / "out", overwrite=True))  # starts again
    assert not any(p.name.startswith(PREFIX) for p in (tmp_path / "out").iterdir())


def test_resume_and_overwrite_together_are_refused(trained, volume, tmp_path, capsys) -> None:
    argv = ["predict", trained, "--input", volume, "--output", tmp_path / "out", "--resume", "--overwrite"]
    assert run_cli(argv) == 2
    assert "--resume keeps what a stopped prediction wrote" in capsys.readouterr().err


def test_a_tiff_volume_resumes_too(trained, tmp_path) -> None:
    image, _ = synthetic_volume((40, 32, 32), cells=8, seed=2)
    tifffile.imwrite(tmp_path / "vol.tif", image)
    whole = _windows(_config(trained, tmp_path / "vol.tif", tmp_path / "whole"))
    with pytest.raises(Stopped):
        _windows(_config(trained, tmp_path / "vol.tif", tmp_path / "out"), stop_after=whole // 2)
    _windows(_config(trained, tmp_path / "vol.tif", tmp_path / "out", resume=True))
    for kind in ("mask", "labels", "prob"):
        whole, resumed = (tifffile.imread(tmp_path / run / f"vol_{kind}.tif") for run in ("whole", "out"))
        np.testing.assert_array_equal(whole, resumed)
