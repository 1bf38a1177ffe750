"""`voxseg.Predictor`: loaded once, arrays segmented in memory with `voxseg predict`'s result; and the
volumes predict refuses (NaN, empty) with exit 2 and nothing written."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tifffile
from conftest import run_cli, train_small_run

import voxseg
from voxseg.errors import DataError


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_small_run(tmp_path_factory.mktemp("trained"))


def test_the_predictor_gives_the_command_line_s_mask_and_labels_in_memory(trained, tmp_path) -> None:
    run_dir, images, _ = trained
    options = ["--instances", "watershed", "--save-probabilities"]
    assert run_cli(["predict", run_dir, "--input", images, "--output", tmp_path / "out", *options]) == 0
    predictor = voxseg.Predictor(run_dir, instances="watershed")
    for image in sorted(images.iterdir()):
        result = predictor(tifffile.imread(image))
        written = tmp_path / "out" / image.stem
        np.testing.assert_array_equal(result.mask, tifffile.imread(f"{written}_mask.tif"))
        np.testing.assert_array_equal(result.labels, tifffile.imread(f"{written}_labels.tif"))
        np.testing.assert_allclose(result.probability, tifffile.imread(f"{written}_prob.tif"), atol=1e-6)
        assert result.mask.any() and result.threshold == predictor.threshold


def test_the_predictor_loads_the_model_once(trained, monkeypatch) -> None:
    from voxseg.inference.model import trained as trained_module

    run_dir, images, _ = trained
    loads = []
    load = trained_module.load_trained_model
    monkeypatch.setattr(trained_module, "load_trained_model", lambda config: loads.append(1) or load(config))
    predictor = voxseg.Predictor(run_dir)
    volume = tifffile.imread(next(images.iterdir()))
    first, second = predictor(volume), predictor(volume)
    np.testing.assert_array_equal(first.mask, second.mask)
    assert loads == [1] and first.labels is None


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (np.zeros((0, 8, 8), np.float32), "Z×Y×X"),
        (np.zeros((8, 8), np.float32), "Z×Y×X"),
        (np.zeros((8, 2, 8, 8), np.float32), "pass one channel, e.g. image[:, 0]"),
    ],
)
def test_the_predictor_refuses_an_array_that_is_no_volume(trained, bad, says) -> None:
    with pytest.raises(DataError, match=re.escape(says)):
        voxseg.Predictor(trained[0])(bad)


def test_the_predictor_refuses_nan(trained) -> None:
    volume = np.ones((24, 24, 24), np.float32)
    volume[3, 3, 3] = np.nan
    with pytest.raises(DataError, match="NaN"):
        voxseg.Predictor(trained[0])(volume)


@pytest.mark.parametrize(
    ("volume", "says"),
    [
        (np.where(np.eye(24, dtype=bool)[None].repeat(24, 0), np.inf, 1.0).astype(np.float32), "NaN or Inf"),
        (np.zeros((0, 24, 24), np.float32), "empty"),
    ],
)
def test_predict_refuses_nan_and_empty_volumes(trained, tmp_path, capsys, volume, says) -> None:
    tifffile.imwrite(tmp_path / "bad.tif", volume)
    out = tmp_path / "out"
    assert run_cli(["predict", trained[0], "--input", tmp_path / "bad.tif", "--output", out]) == 2
    err = capsys.readouterr().err
    assert "bad.tif" in err and says in err
    assert not out.exists()
