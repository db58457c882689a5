"""Fixtures only (shared helpers live in helpers.py): the read-only ../shared folder and what is
made from it, a CLI runner, single-threaded children, double precision."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import torch
from helpers import SHARED, THREAD_LIMITS, invoke


@pytest.fixture
def single_threaded_children(monkeypatch: pytest.MonkeyPatch) -> None:
    """For children a test cannot hand an env to (multiprocessing, submitit): they inherit this one."""
    for name, value in THREAD_LIMITS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def float64():
    """Exact comparisons of a loss with its transcription need double precision; restored after the test."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED} (set HASHBENCH_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def cifar_tar(shared: Path) -> Path:
    path = shared / "data" / "cifar10-jpg.tar.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def cifar_mini_tar(cifar_tar: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 270 real CIFAR-10 images of each class (exactly what ``cifar10-mini`` draws
    per class) as a tarball of its own: a run on it decodes 2,700 JPEGs, not 60,000."""
    path = tmp_path_factory.mktemp("cifar_mini") / "cifar10-mini.tar.gz"
    taken: dict[str, int] = {}
    with tarfile.open(cifar_tar) as source, tarfile.open(path, "w:gz") as subset:
        for member in source:
            parts = Path(member.name).parts
            if member.isfile() and len(parts) >= 3 and taken.get(parts[-2], 0) < 270:
                taken[parts[-2]] = taken.get(parts[-2], 0) + 1
                subset.addfile(member, source.extractfile(member))
    return path


@pytest.fixture(scope="session")
def torch_home(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TORCH_HOME whose hub cache holds the shared MobileNetV2 weights, as torchvision expects."""
    weights = shared / "weights" / "mobilenet_v2-b0353104.pth"
    if not weights.is_file():
        pytest.skip(f"{weights} not found")
    home = tmp_path_factory.mktemp("torch_home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    (home / "hub" / "checkpoints" / weights.name).symlink_to(weights)
    return home


@pytest.fixture
def cli():
    return invoke
