"""Backbones through torchvision's weights API (random init here), and --weights PATH."""

from __future__ import annotations

import pytest
import torch

from hashbench.models import build_backbone
from hashbench.registry import BACKBONES
from hashbench.validation import HashbenchError

FEATURE_DIMS = {"alexnet": 4096, "vgg16": 4096, "resnet18": 512, "resnet50": 2048, "mobilenet_v2": 1280,
                "vit_b_16": 768, "small_cnn": 128, "raw": 192}


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_backbone_builds_and_gives_its_feature_dim(name):
    # on the meta device: shapes only, without seconds of initialising VGG-16's 138 M weights
    # (real forwards are in the weights-file, pretrained and training tests)
    with torch.device("meta"):
        backbone = build_backbone(name, None)
        features = backbone.module.eval()(torch.randn(2, 3, backbone.image_size, backbone.image_size))
    assert backbone.feature_dim == FEATURE_DIMS[name]
    assert features.shape == (2, backbone.feature_dim)
    if name not in ("small_cnn", "raw"):  # torchvision's transforms come from the weights' own preset
        assert backbone.image_size == 224 and backbone.mean == pytest.approx((0.485, 0.456, 0.406))


def test_local_weights_file_is_loaded(tmp_path):
    reference = build_backbone("resnet18", None)
    path = tmp_path / "resnet18.pth"
    full = __import__("torchvision").models.resnet18()
    torch.save(full.state_dict(), path)
    loaded = build_backbone("resnet18", None, path)
    assert loaded.weights == str(path)
    for name, tensor in full.state_dict().items():
        if not name.startswith("fc."):
            torch.testing.assert_close(loaded.module.state_dict()[name], tensor)
    assert reference.weights is None


def test_unknown_weights_name_is_a_clear_error():
    with pytest.raises(HashbenchError, match="weights must be one of DEFAULT, IMAGENET1K_V1"):
        build_backbone("resnet18", "IMAGENET9K")


def test_pretrained_mobilenet_loads_offline(torch_home, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    backbone = build_backbone("mobilenet_v2", "IMAGENET1K_V1")
    assert backbone.weights == "MobileNet_V2_Weights.IMAGENET1K_V1"
    first = dict(backbone.module.named_parameters())["features.0.0.weight"]
    assert not torch.equal(first, build_backbone("mobilenet_v2", None).module.features[0][0].weight)


def test_backbone_without_pretrained_weights_takes_default_as_random_init(tmp_path):
    backbone = build_backbone("small_cnn", "DEFAULT")
    assert backbone.weights is None and backbone.weights_label == "random init"  # the label: what the record shows
    assert build_backbone("small_cnn", None).weights_label == "random init"
    path = tmp_path / "small_cnn.pth"
    torch.save(backbone.module.state_dict(), path)
    assert build_backbone("small_cnn", "DEFAULT", path).weights_label == str(path)
    with pytest.raises(HashbenchError, match="small_cnn has no pretrained weights; got weights='IMAGENET1K_V1'"):
        build_backbone("small_cnn", "IMAGENET1K_V1")
