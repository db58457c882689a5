"""``hashbench export``: a run's hash function as one self-contained file.

The exported module maps an image batch, uint8 ``(N, 3, H, W)`` (or float in [0, 1] for
TorchScript), to packed codes, uint8 ``(N, ceil(bits / 8))`` in the bit order of
``codes.npz`` (:func:`numpy.packbits`), with the test-time transform inside: nothing of
hashbench is needed to run it. TorchScript: the transform is scripted (any input size, uint8
or float), backbone and code head are traced (the method's own ``forward`` and ``codes``, in
eval mode); an image at another side than the one the run's images were stored at (256 for
list files and image folders, whatever the files' size) is first resized to it as the
dataset's files were decoded (Pillow's bilinear resize, reproduced bit for bit:
:func:`hashbench.deploy.model.pil_resize`), so an image file fed at its own size gives the
codes the run saved for it. ONNX (``pip install 'hashbench[onnx]'``): exported for uint8 input
at that stored side (fixed height and width, a dynamic batch; onnxruntime refuses another
size and names the expected one): resize images to it first as
:func:`hashbench.data.images.decode_rgb` does, since the Pillow resize depends on the input
size in ways a fixed ONNX graph cannot follow.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hashbench.deploy.model import HashModel, load_model
from hashbench.storage import atomic_write, refuse_to_replace
from hashbench.validation import HashbenchError

FORMATS = ("torchscript", "onnx")


class _Exported(nn.Module):
    """Scripted transform, then traced code head."""

    def __init__(self, preprocess: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.preprocess = preprocess
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.preprocess(images))


def example_images(model: HashModel, count: int = 4) -> torch.Tensor:
    """A seeded uint8 batch at the side the run's images were stored at (else the model's input size)."""
    side = model.input_size or model.preprocess.image_size
    return torch.randint(0, 256, (count, 3, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


class _Context:
    """Stands in for an autograd context: an export needs no backward, so what is saved is dropped."""

    def save_for_backward(self, *tensors: torch.Tensor) -> None:
        pass

    def mark_non_differentiable(self, *tensors: torch.Tensor) -> None:
        pass


@contextlib.contextmanager
def inline_autograd_functions() -> Iterator[None]:
    """Run custom ``torch.autograd.Function``s (straight-through signs and the like) as their
    plain forward while tracing: a traced Python function call cannot be saved, even in a
    branch the codes do not use (GreedyHash's classifier input)."""
    original = torch.autograd.Function.__dict__["apply"]

    def apply(cls: type, *args: Any, **kwargs: Any) -> Any:
        if torch.autograd.function._is_setup_context_defined(cls.setup_context):
            return cls.forward(*args, **kwargs)
        return cls.forward(_Context(), *args, **kwargs)

    torch.autograd.Function.apply = classmethod(apply)
    try:
        yield
    finally:
        torch.autograd.Function.apply = original


def to_torchscript(model: HashModel) -> torch.jit.ScriptModule:
    """The model as one TorchScript module (see the module docstring)."""
    example = example_images(model)
    with warnings.catch_warnings(), torch.no_grad(), inline_autograd_functions():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, and still the one portable format
        head = torch.jit.trace(model.head, model.preprocess(example), check_trace=False)
        try:
            return torch.jit.script(_Exported(torch.jit.script(model.preprocess), head))
        except RuntimeError as err:
            raise HashbenchError(f"cannot script the model: {str(err).splitlines()[0]}") from None


def export_onnx(model: HashModel, out: Path) -> None:
    """Write the model as ONNX through ``torch.onnx`` (needs the ``onnx`` and ``onnxscript`` packages)."""
    try:
        import onnx  # noqa: F401  (torch.onnx needs it; a clear message beats its ImportError)
        import onnxscript  # noqa: F401
    except ImportError:
        raise HashbenchError("ONNX export needs onnx and onnxscript: pip install 'hashbench[onnx]'") from None
    example = example_images(model)
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad(), inline_autograd_functions():
        program = torch.onnx.export(model, (example,), dynamo=True, input_names=["images"], output_names=["codes"],
                                    dynamic_shapes={"images": {0: batch}}, verbose=False)
    tmp = out.with_name(f".{out.name}.tmp")
    program.save(str(tmp))
    tmp.replace(out)


def export_run(folder: Path, fmt: str, out: Path, *, force: bool = False) -> Path:
    """Export the model of the run in ``folder`` to ``out`` as ``fmt`` (one of :data:`FORMATS`);
    an existing ``out`` is replaced only with ``force``."""
    if fmt not in FORMATS:
        raise HashbenchError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    refuse_to_replace(out, force)
    model = load_model(folder)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "torchscript":
        scripted = to_torchscript(model)
        with atomic_write(out, "wb") as handle, warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.save(scripted, handle)
    else:
        export_onnx(model, out)
    return out
