"""Multi-process training with torch.distributed, as launched by ``torchrun``.

How N processes train the objective of one: every rank draws the same global batch order
(the generators are seeded alike) and takes every N-th item of each global batch; the
method's outputs, the batch positions and hence the labels are all-gathered *with
gradients* (``torch.distributed.nn.all_gather``) so that every loss, pairwise terms over
the batch and code memories included, sees the global batch; every rank computes the same
loss and applies the same update to method state such as DPSH's memory. The backward of
the gather sums N identical gradients, DDP's all-reduce divides by N, so the parameters
get exactly the single-process gradient of the global loss. BatchNorm statistics are
per rank, as usual with DDP. Only rank 0 writes checkpoints, records and codes.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def world() -> World:
    """The process group this process belongs to, initialised on first use from torchrun's
    environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``); a single process otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
        atexit.register(shutdown)
    return World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def shutdown() -> None:
    """Tear the process group down before the interpreter exits.

    Left to interpreter teardown, gloo's worker threads can be destroyed while still
    joinable, and the process aborts ("terminate called without an active exception")
    after its work is done, failing a finished torchrun job.
    """
    if dist.is_initialized():
        dist.destroy_process_group()


def gather_with_grad(value: Any) -> Any:
    """Concatenate a tensor (or the tensors of a dataclass or dict) over ranks, keeping gradients."""
    if isinstance(value, torch.Tensor):
        from torch.distributed.nn.functional import all_gather

        with warnings.catch_warnings():  # deprecated in recent torch; its replacement is private
            warnings.simplefilter("ignore", FutureWarning)
            return torch.cat(all_gather(value.contiguous()))
    if dataclasses.is_dataclass(value):
        return dataclasses.replace(value, **{f.name: gather_with_grad(getattr(value, f.name))
                                             for f in dataclasses.fields(value)})
    if isinstance(value, dict):
        return {k: gather_with_grad(v) for k, v in value.items()}
    return value


def gather_rows(rows: np.ndarray, positions: np.ndarray, total: int) -> np.ndarray:
    """Reassemble an array whose rows ``positions`` each rank computed (no gradients)."""
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, (positions, rows))
    out = np.empty((total, *rows.shape[1:]), dtype=rows.dtype)
    for part_positions, part_rows in parts:
        out[part_positions] = part_rows
    return out


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
