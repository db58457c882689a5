"""Backbones: image -> feature vector, with the input transform their weights expect.

torchvision models are built through torchvision's weights API, so pretrained ImageNet
weights load from ``$TORCH_HOME/hub/checkpoints`` when offline, and the image size and
normalisation come from the weights' own transforms. ``weights_path`` loads a local state
dict (``weights_only=True``) instead. ``small_cnn`` is the from-scratch backbone of the
embedded ``digits`` dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hashbench.registry import BACKBONES, UnknownNameError
from hashbench.validation import HashbenchError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ``Backbone.weights`` of a backbone without pretrained weights asked for its default ones.
RANDOM_INIT = "random init"


@dataclass
class Backbone:
    """A built backbone and what the runner needs to feed it."""

    module: nn.Module
    feature_dim: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights: str | None  # the pretrained weights' name or file; None: random initialisation
    weights_file: Path | None = None  # the local state dict it was loaded from, if any

    @property
    def weights_label(self) -> str:
        """What the record and the console say of the weights: their name or file, or 'random init'."""
        return self.weights or RANDOM_INIT


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    summary: str
    build: Callable[[str | None, Path | None], Backbone]


class SmallCNN(nn.Module):
    """Two conv blocks and a 128-d batch-normalised embedding; trains on 8x8 digits in seconds on a CPU.

    The closing BatchNorm keeps the features centred: pairwise losses on unbounded linear
    codes (DPSH) diverge on features with a large common offset.
    """

    feature_dim = 128

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(256, self.feature_dim), nn.BatchNorm1d(self.feature_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def load_state_dict_file(module: nn.Module, path: Path, backbone: str) -> None:
    """Load a local state dict into ``module``; a file that does not fit names both."""
    if not path.is_file():
        raise HashbenchError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad file
        raise HashbenchError(f"weights file {path} cannot be read: {str(err).splitlines()[0]}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        first = str(err).splitlines()[0]
        raise HashbenchError(f"weights file {path} does not fit backbone {backbone}: {first}") from None


def _build_small_cnn(weights: str | None, weights_path: Path | None) -> Backbone:
    # With no pretrained weights, the default ("DEFAULT", what every dataset but digits
    # asks for) is random initialisation.
    if weights not in (None, "none", "DEFAULT"):
        raise HashbenchError(f"small_cnn has no pretrained weights; got weights={weights!r}")
    module = SmallCNN()
    if weights_path is not None:
        load_state_dict_file(module, weights_path, "small_cnn")
    return Backbone(module, SmallCNN.feature_dim, 16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
                    str(weights_path) if weights_path else None, weights_path)


def _strip_last_linear(attr: str) -> Callable[[nn.Module], int]:
    """Drop the last layer of ``model.<attr>`` (a Sequential), keeping e.g. AlexNet's fc7."""

    def strip(model: nn.Module) -> int:
        head = getattr(model, attr)
        setattr(model, attr, head[:-1])
        return head[-1].in_features

    return strip


def _replace_with_identity(attr: str, in_features: Callable[[nn.Module], int]) -> Callable[[nn.Module], int]:
    def strip(model: nn.Module) -> int:
        dim = in_features(getattr(model, attr))
        setattr(model, attr, nn.Identity())
        return dim

    return strip


def _torchvision_builder(arch: str, strip: Callable[[nn.Module], int]) -> Callable[..., Backbone]:
    def build(weights: str | None, weights_path: Path | None) -> Backbone:
        import torchvision  # here, not at the top: it costs seconds at start-up (torch._dynamo via torchvision.ops)

        enum = torchvision.models.get_model_weights(arch)
        chosen = None
        if weights not in (None, "none"):
            try:
                chosen = enum[weights] if weights != "DEFAULT" else enum.DEFAULT
            except KeyError:
                known = ", ".join(["DEFAULT", *enum.__members__])
                raise HashbenchError(f"weights must be one of {known}, none; got {weights!r}") from None
        if chosen is not None and weights_path is not None:
            raise HashbenchError("give either weights or a weights file (--weights PATH), not both")
        try:
            model = torchvision.models.get_model(arch, weights=chosen)
        except (OSError, RuntimeError) as err:  # offline and not in $TORCH_HOME/hub/checkpoints
            raise HashbenchError(
                f"cannot load {arch} weights {chosen}: {str(err).splitlines()[0]} "
                "(put the file in $TORCH_HOME/hub/checkpoints or pass --weights PATH)"
            ) from None
        if weights_path is not None:
            load_state_dict_file(model, weights_path, arch)
        feature_dim = strip(model)
        preset = (chosen or enum.DEFAULT).transforms()
        return Backbone(model, feature_dim, int(preset.crop_size[0]), tuple(preset.mean), tuple(preset.std),
                        str(chosen) if chosen else (str(weights_path) if weights_path else None), weights_path)

    return build


class TinyImage(nn.Module):
    """The image itself as the feature: average-pooled to 8 x 8 and flattened (192-d).

    The classic "tiny image" input of shallow hashing (LSH, ITQ, SH on pixels): no weights,
    nothing to train. On ``digits`` (8 x 8 images shown at 16 px) it gives back the pixels.
    Cached and standardised with the training split's statistics like any frozen features.
    """

    side = 8
    feature_dim = 3 * side * side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(x, self.side), 1)


def _build_raw(weights: str | None, weights_path: Path | None) -> Backbone:
    if weights not in (None, "none", "DEFAULT") or weights_path is not None:
        raise HashbenchError(f"raw has no weights; got weights={str(weights_path or weights)!r}")
    return Backbone(TinyImage(), TinyImage.feature_dim, 16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), None)


BACKBONES.register("raw", BackboneSpec("raw", "The image average-pooled to 8x8 and flattened (192-d), no weights",
                                       _build_raw))
BACKBONES.register("small_cnn", BackboneSpec("small_cnn", "Two conv blocks and a 128-d embedding, for digits",
                                             _build_small_cnn))
for _arch, _strip, _summary in (
    ("alexnet", _strip_last_linear("classifier"), "AlexNet, fc7 features (4096-d)"),
    ("vgg16", _strip_last_linear("classifier"), "VGG-16, fc7 features (4096-d)"),
    ("resnet18", _replace_with_identity("fc", lambda fc: fc.in_features), "ResNet-18, pooled features (512-d)"),
    ("resnet50", _replace_with_identity("fc", lambda fc: fc.in_features), "ResNet-50, pooled features (2048-d)"),
    ("mobilenet_v2", _replace_with_identity("classifier", lambda head: head[-1].in_features),
     "MobileNetV2, pooled features (1280-d)"),
    ("vit_b_16", _replace_with_identity("heads", lambda head: head[-1].in_features),
     "ViT-B/16, class-token features (768-d)"),
):
    BACKBONES.register(_arch, BackboneSpec(_arch, _summary, _torchvision_builder(_arch, _strip)))


def build_backbone(name: str, weights: str | None = None, weights_path: str | Path | None = None) -> Backbone:
    try:
        spec = BACKBONES.get(name)
    except UnknownNameError as err:
        raise HashbenchError(str(err)) from None
    return spec.build(weights, Path(weights_path) if weights_path else None)
