"""CE: the cross-entropy baseline, a classifier on the codes of a hash layer.

No paper defines it as a method; it is the "Cross Entropy" row of the benchmark of the
OrthoHash authors' framework, github.com/CISiPLab/cisip-FIRe (``configs/templates/ce.yaml``,
``functions/loss/ce.py``, ``models/architectures/arch_ce.py``, ``train.py``), the public code
that defines it. Facts taken from it:

* Hash layer: one Linear(d, bits) on the backbone feature, without bias (``--hash-bias`` is
  off by default), then the layer's output activation (``hash_fc_output``); a linear
  classifier Linear(bits, classes), with bias, on that output; loss: cross-entropy of the
  classifier's logits, weight 1; the binary code is the sign of the hash layer's output.
* Multi-label data: softmax cross-entropy against the label row divided by its number of
  labels (``multi_label_loss="softmax"``; one-hot rows give the plain cross-entropy).
* Recipe (``train.py``'s defaults): Adam (lr 1e-4, weight decay 5e-4), backbone lr x0.1,
  batch 64, 100 epochs, lr x0.1 after 80% of them. Train-time augmentation per dataset
  (``utils/augmentations.py``, ``configs.py``): ImageNet-100 and COCO random resized crop +
  flip (``crop_flip``, the default); NUS-WIDE resize, random crop, flip (``random_crop_flip``);
  CIFAR-10 flip + brightness/contrast jitter 0.05 (``flip_jitter``).

hashbench's choices (the brief of this benchmark fixes the baseline as "classification head +
sign of a hash layer" with tanh): the output activation is tanh (FIRe's ``hash_fc_output:
tanh``; FIRe's default is the identity), so the classifier sees codes in (-1, 1) whose
signs are the binary code. On multi-label data the default loss is binary cross-entropy per
class (``multi_label_loss="bce"``: sigmoid of each logit against the label's 0/1, averaged
over classes and items; FIRe keeps that line commented out); ``softmax`` gives FIRe's.
Single-label data always uses the plain softmax cross-entropy. Whether data are
multi-label is decided once, from the whole training split (``on_fit_start``: some row has
more than one label), as FIRe's per-dataset ``multiclass`` flag, never per batch.

The classifier on the codes (:class:`hashbench.blocks.CodeClassifier`) and its loss
(:func:`hashbench.losses.classification_loss`) are shared by the classification family (CE,
GreedyHash, JMLH).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from hashbench.blocks import MULTI_LABEL_LOSSES, ClassifierOutput, CodeClassifier, HashLayer, head_param
from hashbench.method import choice, register_method


@register_method("ce")
class CE(CodeClassifier):
    """The cross-entropy baseline: tanh hash layer, linear classifier on its output."""

    summary = "CE (baseline, as in FIRe's benchmark): tanh hash layer + linear classifier, cross-entropy"
    paper = "the FIRe benchmark's baseline"
    multi_label_loss = choice("bce", MULTI_LABEL_LOSSES, help="loss on multi-label data")
    head = head_param("linear")
    train_defaults: ClassVar[dict[str, Any]] = {
        "optimizer": "adam", "lr": 1e-4, "backbone_lr_mult": 0.1, "weight_decay": 5e-4, "batch_size": 64,
        "epochs": 100, "scheduler": "step", "lr_step": 80, "lr_gamma": 0.1, "augment": "crop_flip",
    }
    frozen_train_defaults: ClassVar[dict[str, Any]] = {"epochs": 30}
    dataset_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "cifar10*": {"augment": "flip_jitter"}, "nuswide*": {"augment": "random_crop_flip"},
    }
    fidelity = (
        ("Linear(d, q) without bias, activation, Linear(q, C); cross-entropy; Adam 1e-4, wd 5e-4, backbone x0.1, 100 "
         "ep, x0.1 at 80% (CISiPLab/cisip-FIRe `configs/templates/ce.yaml`, `train.py`)",
         "tanh activation (FIRe's `hash_fc_output: tanh`; its default is the identity)",
         "multi-label: per-class BCE by default (`multi_label_loss=softmax` is FIRe's)"),
        ("the reference always fine-tunes",
         "cached features: 30 epochs",
         "best of the validation curve (32 bits: 54.4 at 25 and 30)"),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hash_layer = HashLayer(self.feature_dim, self.bits, head=self.head, tanh=True, bias=False)

    def forward(self, features: torch.Tensor) -> ClassifierOutput:
        codes = self.hash_layer(features)
        return ClassifierOutput(codes=codes, logits=self.classifier(codes))

    def loss(self, output: ClassifierOutput, *, labels: torch.Tensor, index: torch.Tensor, step: int
             ) -> dict[str, torch.Tensor]:
        ce = self.classification(output, labels)
        return {"loss": ce, "ce": ce}
