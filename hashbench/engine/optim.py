"""The optimizer and learning-rate schedule of a run, from its config, and one optimizer step."""

from __future__ import annotations

import torch
from torch import nn

from hashbench.config import RunConfig
from hashbench.method import HashMethod


def build_optimizer(config: RunConfig, method: HashMethod, backbone: nn.Module | None) -> torch.optim.Optimizer:
    """Two parameter groups: the method's head(s) at ``lr`` and a trained backbone at
    ``lr * backbone_lr_mult`` (``backbone_lr_mult=0`` freezes it; a frozen run has none)."""
    groups = [{"params": [p for p in method.parameters() if p.requires_grad], "lr": config.lr}]
    if backbone is not None and config.backbone_lr_mult > 0:
        groups.append({"params": list(backbone.parameters()), "lr": config.lr * config.backbone_lr_mult})
    elif backbone is not None:
        backbone.requires_grad_(False)
    common = {"weight_decay": config.weight_decay}
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, momentum=config.momentum, nesterov=config.nesterov, **common)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, **common)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, **common)
    return torch.optim.Adam(groups, **common)


def build_scheduler(config: RunConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-epoch schedule: a step decay, cosine annealing, or a constant rate."""
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=config.lr_gamma)
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def optimizer_step(optimizer: torch.optim.Optimizer, method: HashMethod, loss: torch.Tensor, step: int) -> None:
    """Backward and one optimizer step; the method's inactive parameters get no gradient,
    so the optimizer leaves them, and their momentum state, alone (a zero gradient would
    not: Adam moves a parameter with a zero gradient by its running averages)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for parameter in method.inactive_parameters(step):
        parameter.grad = None
    optimizer.step()
