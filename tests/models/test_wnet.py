"""WNet3D: K classes and a reconstruction while training, one foreground logit otherwise, and a
weights file that rebuilds it alone."""

from __future__ import annotations

import pytest
import torch

from voxseg.models.registry import build_for_weights, build_model
from voxseg.models.weights import models_fitting
from voxseg.models.wnet import WNet3D, classes_of_weights, foreground_logit


@pytest.mark.parametrize("classes", [2, 3])
def test_training_gives_classes_and_reconstruction_eval_one_logit(classes: int) -> None:
    model = build_model("WNet3D", classes=classes)
    image = torch.randn(1, 1, 16, 16, 16)
    assert model(image).shape == (1, classes + 1, 16, 16, 16)
    model.eval()
    assert model(image).shape == (1, 1, 16, 16, 16)


def test_the_foreground_logit_is_the_softmax_probability_as_a_logit() -> None:
    logits = torch.randn(2, 3, 4, 4, 4)
    probability = torch.softmax(logits, 1)[:, 1:2]
    assert torch.allclose(torch.sigmoid(foreground_logit(logits, torch.tensor(1))), probability, atol=1e-6)


def test_a_weights_file_rebuilds_the_network_with_its_classes_and_voxel_size() -> None:
    trained = WNet3D(classes=3, voxel_size=(2.0, 1.0, 1.0))
    state = trained.state_dict()
    assert classes_of_weights(state) == 3
    rebuilt = build_for_weights("WNet3D", state)
    rebuilt.load_state_dict(state, strict=True)
    assert models_fitting(state) == ["WNet3D"]


def test_one_class_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 classes"):
        WNet3D(classes=1)


@pytest.mark.parametrize("bright_class", [0, 2])
def test_the_brightest_class_becomes_the_foreground_while_training(bright_class: int) -> None:
    model = WNet3D(classes=3)
    image = torch.zeros(1, 1, 8, 8, 8)
    image[..., 2:6, 2:6, 2:6] = 5.0  # a bright cube in a dark volume

    def encoder(volume: torch.Tensor) -> torch.Tensor:  # the bright voxels go to `bright_class`
        logits = torch.zeros(1, 3, *volume.shape[2:])
        logits[:, bright_class] = 10 * (volume[:, 0] > 1)
        logits[:, 1] = 10 * (volume[:, 0] <= 1)
        return logits

    model.encoder.forward = encoder
    model.train()
    model(image)
    assert int(model.foreground) == bright_class
    assert int(model.state_dict()["foreground"]) == bright_class  # a weights file says so alone
