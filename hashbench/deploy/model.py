"""The trained hash function of a finished run, kept as a slim artifact and loaded back.

A run's ``model.pt`` holds plain data (tensors, numbers, strings), so it loads with
``torch.load(..., weights_only=True)``: the backbone, the feature standardisation of a frozen
run, the method's state (heads and buffers; a closed-form method's fit lives in buffers too),
the test-time transform (image size, mean, std) and the side images were stored at.

The backbone is kept as its state when training changed it (fine-tuned) or nothing else can
rebuild it (random init). A frozen backbone with pretrained weights is kept as the name of
those weights (or the weights file given with ``--weights``) and rebuilt from them: every run
of a frozen grid shares one backbone, and a copy per run would cost 14 MB (MobileNetV2) to
528 MB (VGG-16) each. Such a model loads where those weights load (``$TORCH_HOME``).

:class:`HashModel` reproduces the runner's encode path exactly (see
:func:`hashbench.engine.runner.encode`): uint8 pixels (an image of another side first resized
to the stored one as the dataset's files were decoded) -> ``ImageTransform`` at test time ->
channels-last backbone -> standardisation -> ``method.codes(method(features)) >= 0``, so on
the CPU the codes of a run's database images equal its saved codes bit for bit (for a
fine-tuned run; a frozen run's features were extracted in other batches, which may move a
float by one ulp).
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hashbench.data.datasets import HashingDataset
from hashbench.data.images import LOAD_SIZE, FileImages, ImageTransform, TensorImages
from hashbench.method import HashMethod, create_method
from hashbench.models.backbones import Backbone, build_backbone
from hashbench.results import MODEL, check_artifact, read_record
from hashbench.storage import atomic_write
from hashbench.validation import HashbenchError

#: Bumped when the artifact's layout changes.
ARTIFACT_VERSION = 1


#: Bits of Pillow's fixed-point resampling weights for 8-bit images (``PRECISION_BITS`` in its Resample.c).
PIL_PRECISION_BITS = 22


def pil_bilinear_weights(in_size: int, out_size: int, device: torch.device) -> torch.Tensor:
    """``(out_size, in_size)`` float64 matrix of the integer weights, scaled by
    ``2**PIL_PRECISION_BITS``, with which Pillow's ``resize(..., BILINEAR)`` maps a row of
    ``in_size`` pixels to ``out_size`` (its ``precompute_coeffs`` and ``normalize_coeffs_8bpc``,
    step by step in double precision: the same numbers)."""
    scale = float(in_size) / float(out_size)
    filterscale = scale if scale > 1.0 else 1.0
    support = filterscale  # the bilinear filter's support (1) times the scale
    centers = (torch.arange(out_size, dtype=torch.float64, device=device) + 0.5) * scale
    first = torch.trunc(centers - support + 0.5).clamp(min=0.0)
    count = torch.trunc(centers + support + 0.5).clamp(max=float(in_size)) - first
    taps: list[torch.Tensor] = []
    total = torch.zeros(out_size, dtype=torch.float64, device=device)
    for tap in range(math.ceil(support) * 2 + 1):
        distance = ((first + tap - centers + 0.5) * (1.0 / filterscale)).abs()
        weight = torch.where((count > tap) & (distance < 1.0), 1.0 - distance, torch.zeros_like(distance))
        total = total + weight  # summed in tap order, as Pillow does
        taps.append(weight)
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64, device=device)
    rows = torch.arange(out_size, device=device)
    for tap, weight in enumerate(taps):
        normalised = torch.where(total != 0.0, weight / total, weight)
        used = count > tap
        matrix[rows[used], (first + tap).long()[used]] = torch.trunc(normalised * 4194304.0
                                                                     + 0.5)[used]
    return matrix


def _pil_pass(x: torch.Tensor, integer: bool) -> torch.Tensor:
    """One pass's sums back to pixels: Pillow's rounding and clipping to 0..255 for 8-bit images."""
    if integer:
        return torch.floor((x + 2097152.0) / 4194304.0).clamp(0, 255)
    return x / 4194304.0


def pillow_orders_passes() -> bool:
    """Whether the installed Pillow runs the vertical pass first when the height shrinks more
    than twice as much as the width (13.0 and later); earlier versions always start horizontally."""
    import PIL

    return int(PIL.__version__.split(".")[0]) >= 13


def pil_resize(images: torch.Tensor, size: int, order_passes: bool) -> torch.Tensor:
    """Images ``(N, C, H, W)`` resized to ``size`` squares as :func:`hashbench.data.images.decode_rgb`
    does with Pillow's ``resize((size, size), BILINEAR)``: a horizontal and a vertical pass,
    each rounded to uint8, in Pillow's order (``order_passes``: :func:`pillow_orders_passes`);
    bit for bit for uint8 input. Float input gets the same weights without the rounding."""
    integer = images.dtype == torch.uint8
    x = images.to(torch.float64)  # sums of integer products below 2**53: exact in any order
    height, width = x.shape[-2], x.shape[-1]
    vertical_first = order_passes and height - size > 0 and height - size > (width - size) * 2
    if vertical_first and height != size:
        x = _pil_pass(torch.matmul(pil_bilinear_weights(height, size, x.device), x), integer)
    if width != size:
        x = _pil_pass(torch.matmul(x, pil_bilinear_weights(width, size, x.device).t()), integer)
    if not vertical_first and height != size:
        x = _pil_pass(torch.matmul(pil_bilinear_weights(height, size, x.device), x), integer)
    return x.to(torch.uint8) if integer else x.to(images.dtype)


class Preprocess(nn.Module):
    """The test-time :class:`~hashbench.data.images.ImageTransform` as a scriptable module.

    uint8 pixels are used as they are; float pixels are taken in [0, 1] (torchvision's
    convention) and scaled by 255. Images of another side than ``input_size`` (the side the
    run's images were stored at; 0 when unknown) are first resized to it as the dataset's
    files were decoded (:func:`pil_resize`), so an image file fed at its own size gives the
    codes the run saved for it. Then the same operations in the same order as the runner's
    transform, so the result is bit-identical for uint8 input.
    """

    def __init__(self, image_size: int, mean: tuple[float, ...], std: tuple[float, ...], input_size: int = 0
                 ) -> None:
        super().__init__()
        self.image_size = image_size
        self.input_size = input_size
        self.order_passes = pillow_orders_passes()  # the Pillow that decodes the dataset's files here
        self.register_buffer("scale", torch.tensor([1 / (255 * s) for s in std])[None, :, None, None])
        shift = [m / s for m, s in zip(mean, std, strict=True)]
        self.register_buffer("shift", torch.tensor(shift)[None, :, None, None])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.input_size > 0 and (images.shape[-1] != self.input_size or images.shape[-2] != self.input_size):
            images = pil_resize(images, self.input_size, self.order_passes)
        x = images.float() if images.dtype == torch.uint8 else images.float() * 255
        x = x * self.scale - self.shift
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=[self.image_size, self.image_size], mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.image_size)
        return x


class CodeHead(nn.Module):
    """Normalised images -> packed codes: backbone, standardisation, the method's code head,
    ``>= 0``, bits packed as :func:`numpy.packbits` does (big bit order, zero padding), the
    format of ``codes.npz``."""

    def __init__(self, backbone: nn.Module, method: HashMethod, feature_mean: torch.Tensor | None,
                 feature_scale: torch.Tensor | None) -> None:
        super().__init__()
        self.backbone = backbone.eval().to(memory_format=torch.channels_last)
        self.method = method.eval()
        self.standardize = feature_mean is not None
        self.register_buffer("feature_mean", feature_mean if feature_mean is not None else torch.zeros(0))
        self.register_buffer("feature_scale", feature_scale if feature_scale is not None else torch.zeros(0))
        self.bits = method.bits
        self.register_buffer("byte_weights", torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.int32))

    def bits_of(self, x: torch.Tensor) -> torch.Tensor:
        """Bool (N, bits) codes of normalised images."""
        features = self.backbone(x.contiguous(memory_format=torch.channels_last)).float()
        if self.standardize:
            features = (features - self.feature_mean) / self.feature_scale
        return self.method.codes(self.method(features)) >= 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bits = self.bits_of(x).to(torch.int32)
        padded = F.pad(bits, (0, (-self.bits) % 8))
        return (padded.reshape(padded.shape[0], -1, 8) * self.byte_weights).sum(-1).to(torch.uint8)


class HashModel(nn.Module):
    """Image batch (uint8, or float in [0, 1]; (N, 3, H, W)) -> packed uint8 codes (N, ceil(bits / 8))."""

    def __init__(self, preprocess: Preprocess, head: CodeHead, *, input_size: int | None) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.head = head
        self.bits = head.bits
        self.input_size = input_size  # the side images were stored at (decode there first), None when unknown

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.preprocess(images))

    @torch.no_grad()
    def encode_bits(self, images: torch.Tensor) -> torch.Tensor:
        """Bool (N, bits) codes, the form ``load_codes`` returns."""
        return self.head.bits_of(self.preprocess(images))


@dataclass(frozen=True)
class ArtifactInfo:
    """What the record says about a run's model file."""

    file: str
    bytes: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "bytes": self.bytes, "sha256": self.sha256}


def _plain_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A state dict of contiguous CPU tensors (no channels-last strides, no views of larger storage)."""
    return {key: value.detach().cpu().contiguous().clone() for key, value in module.state_dict().items()}


def artifact_payload(*, config: Any, backbone: Backbone, transform: ImageTransform, method: HashMethod,
                     num_classes: int, num_train: int, feature_stats: tuple[torch.Tensor, torch.Tensor] | None,
                     input_size: int | None) -> dict[str, Any]:
    """The artifact's content: plain data only, so that ``weights_only=True`` loads it."""
    mean, scale = feature_stats if feature_stats is not None else (None, None)
    by_name = bool(config.frozen_backbone) and backbone.weights is not None  # pretrained and unchanged
    weights_file = str(backbone.weights_file) if backbone.weights_file else None
    return {
        "version": ARTIFACT_VERSION,
        "method": config.method,
        "hparams": dict(config.hparams),
        "bits": config.bits,
        "seed": config.seed,
        "feature_dim": backbone.feature_dim,
        "num_classes": num_classes,
        "num_train": num_train,
        "backbone": config.backbone,
        "weights": backbone.weights,
        # rebuilt from these when the state is not kept: the member name of torchvision's
        # weights enum ("MobileNet_V2_Weights.IMAGENET1K_V1" -> "IMAGENET1K_V1"), or the file
        "weights_name": None if not by_name or weights_file else backbone.weights.rsplit(".", 1)[-1],
        "weights_file": weights_file if by_name else None,
        "frozen": bool(config.frozen_backbone),
        "image_size": transform.image_size,
        "mean": list(transform.mean),
        "std": list(transform.std),
        "input_size": input_size,
        "backbone_state": None if by_name else _plain_state(backbone.module),
        "feature_mean": None if mean is None else mean.detach().cpu().clone(),
        "feature_scale": None if scale is None else scale.detach().cpu().clone(),
        "method_state": _plain_state(method),
    }


def save_artifact(folder: Path, payload: dict[str, Any]) -> ArtifactInfo:
    """Write ``model.pt`` atomically; its size and sha256 go in the record."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    with atomic_write(folder / MODEL, "wb") as handle:
        handle.write(data)
    return ArtifactInfo(MODEL, len(data), hashlib.sha256(data).hexdigest())


def artifact_path(folder: Path) -> Path:
    """The model file of a finished run, or a one-line error that says how to get one."""
    record = read_record(folder)
    if record is None:
        raise HashbenchError(f"no run record in {folder}")
    if record.get("status") != "done":
        raise HashbenchError(f"{folder} holds an unfinished run (status {record.get('status')})")
    info = (record.get("artifacts") or {}).get("model")
    path = folder / (info["file"] if info else MODEL)
    if info is None or not path.is_file():
        raise HashbenchError(f"{folder} has no model artifact (made before models were kept, or with "
                             "keep_model=false); rerun it with --force to keep one")
    return path


def build_model(payload: dict[str, Any]) -> HashModel:
    """A :class:`HashModel` in eval mode, on the CPU, from an artifact's content."""
    if payload.get("version") != ARTIFACT_VERSION:
        raise HashbenchError(f"model artifact version {payload.get('version')} is not {ARTIFACT_VERSION}")
    if payload["backbone_state"] is None:  # frozen pretrained weights, kept by name
        backbone = build_backbone(payload["backbone"], payload["weights_name"], payload["weights_file"])
    else:
        backbone = build_backbone(payload["backbone"], None)  # architecture only: the state follows
        backbone.module.load_state_dict(payload["backbone_state"])
    method = create_method(payload["method"], feature_dim=payload["feature_dim"], bits=payload["bits"],
                           num_classes=payload["num_classes"], num_train=payload["num_train"], seed=payload["seed"],
                           **payload["hparams"])
    method.load_state_dict(payload["method_state"])
    head = CodeHead(backbone.module, method, payload["feature_mean"], payload["feature_scale"])
    preprocess = Preprocess(payload["image_size"], tuple(payload["mean"]), tuple(payload["std"]),
                            payload["input_size"] or 0)
    return HashModel(preprocess, head, input_size=payload["input_size"]).eval()


def load_model(folder: Path) -> HashModel:
    """The trained hash function of the run in ``folder`` (``weights_only=True``), its file
    checked against the size and sha256 the record states before it is read."""
    path = artifact_path(folder)
    check_artifact(path, read_record(folder)["artifacts"]["model"])
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad file
        raise HashbenchError(f"model artifact {path} cannot be read: {str(err).splitlines()[0]}") from None
    return build_model(payload)


def stored_image_size(dataset: HashingDataset) -> int | None:
    """The side a dataset's images are stored (and fed to the transform) at: that of its image
    store when loaded, the side files are decoded at for a dataset read from files, else None
    (images held in memory that a frozen run on cached features never loaded)."""
    store = dataset.__dict__.get("images")  # the cached property, without loading it
    if isinstance(store, TensorImages):
        return int(store.pixels.shape[-1])
    if isinstance(store, FileImages):
        return store.load_size
    return LOAD_SIZE if dataset.image_files is not None else None  # files are decoded at LOAD_SIZE
