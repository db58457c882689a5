"""The kept model artifact and its export: codes of the exported module equal the saved ones."""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import invoke, make_list_dataset
from PIL import Image

from hashbench.data.datasets import load_dataset
from hashbench.data.images import ImageTransform, decode_image
from hashbench.deploy.model import MODEL, load_model, pil_resize, pillow_orders_passes, stored_image_size
from hashbench.models.backbones import build_backbone
from hashbench.results import RECORD, read_record


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Finished digits runs: DPSH and GreedyHash fine-tuned (small CNN), ITQ in closed form on
    cached raw pixels, a DPSH run told not to keep its model, one on a frozen small CNN
    loaded from a weights file, and two seeds on a frozen randomly initialised one."""
    root = tmp_path_factory.mktemp("export") / "results"
    torch.manual_seed(0)
    torch.save(build_backbone("small_cnn").module.state_dict(), root.parent / "small_cnn.pth")
    invoke("run", "--methods", "dpsh", "--bits", "16", "--epochs", "1", "--results", root, "--no-progress",
           "--frozen-backbone", "--weights", root.parent / "small_cnn.pth", "--set", "tag=frozen")
    invoke("run", "--methods", "dpsh,greedyhash,itq", "--bits", "16", "--epochs", "1", "--results", root,
           "--no-progress")
    invoke("run", "--methods", "dpsh", "--bits", "16", "--epochs", "1", "--results", root, "--no-progress",
           "--set", "keep_model=false", "--set", "tag=nomodel")
    invoke("run", "--methods", "dpsh", "--bits", "16", "--epochs", "1", "--results", root, "--no-progress",
           "--frozen-backbone", "--seeds", "0,1", "--set", "tag=frozen-random")
    return root


def run_folder(root: Path, method: str) -> Path:
    return root / "digits" / method / "16" / "seed0"


def database_pixels(folder: Path) -> tuple[torch.Tensor, np.ndarray]:
    """The database images of a digits run and its saved packed database codes."""
    with np.load(folder / "codes.npz") as codes:
        index, packed = codes["database_index"], codes["database_codes"]
    return load_dataset("digits").images.pixels[torch.as_tensor(index)], packed


def encode_in_batches(module: torch.nn.Module, pixels: torch.Tensor) -> np.ndarray:
    """As the runner encodes: batches of 256."""
    with torch.no_grad():
        return torch.cat([module(pixels[i : i + 256]) for i in range(0, len(pixels), 256)]).numpy()


def test_artifact_recorded_and_loads_with_weights_only(runs: Path) -> None:
    folder = run_folder(runs, "dpsh")
    info = read_record(folder)["artifacts"]["model"]
    data = (folder / info["file"]).read_bytes()
    assert info["bytes"] == len(data)
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    payload = torch.load(folder / MODEL, map_location="cpu", weights_only=True)
    assert payload["method"] == "dpsh" and payload["bits"] == 16 and payload["backbone"] == "small_cnn"
    assert not payload["frozen"] and payload["input_size"] == 8


def test_keep_model_false_writes_and_records_none(runs: Path) -> None:
    folder = runs / "digits" / "dpsh+nomodel" / "16" / "seed0"
    assert read_record(folder)["status"] == "done"
    assert "model" not in read_record(folder)["artifacts"]  # the codes alone
    assert not (folder / MODEL).exists()
    assert read_record(folder)["config"]["keep_model"] is False
    # keep_model (like tag) is a runtime key: it leaves the run's fingerprint alone
    assert read_record(folder)["fingerprint"] == read_record(run_folder(runs, "dpsh"))["fingerprint"]


@pytest.mark.parametrize("method", ["dpsh", "greedyhash", "itq"])
def test_loaded_model_reproduces_database_codes(runs: Path, method: str) -> None:
    folder = run_folder(runs, method)
    pixels, packed = database_pixels(folder)
    assert np.array_equal(encode_in_batches(load_model(folder), pixels), packed)


@pytest.mark.parametrize("method", ["dpsh", "greedyhash", "itq"])
def test_torchscript_export_reproduces_database_codes(runs: Path, method: str, tmp_path: Path) -> None:
    folder = run_folder(runs, method)
    out = tmp_path / f"{method}.pt"
    out.write_bytes(b"an older export")
    invoke("export", folder, "--format", "torchscript", "--out", out, "--force")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(out))
    pixels, packed = database_pixels(folder)
    assert np.array_equal(encode_in_batches(module, pixels), packed)  # bit for bit, on the CPU
    floats = module(pixels[:64].float() / 255)  # float input in [0, 1] works too
    assert floats.dtype == torch.uint8 and floats.shape == (64, 2)


@pytest.mark.slow
def test_onnx_export_reproduces_database_codes(runs: Path, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime", reason="ONNX export is an optional extra: pip install 'hashbench[onnx]'")
    pytest.importorskip("onnxscript", reason="ONNX export is an optional extra: pip install 'hashbench[onnx]'")
    folder = run_folder(runs, "dpsh")
    out = tmp_path / "dpsh.onnx"
    invoke("export", folder, "--format", "onnx", "--out", out)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    pixels, packed = database_pixels(folder)
    codes = np.concatenate([session.run(None, {session.get_inputs()[0].name: pixels[i : i + 256].numpy()})[0]
                            for i in range(0, len(pixels), 256)])
    # onnxruntime's kernels are not torch's: a code at a float's sign boundary may flip
    assert codes.shape == packed.shape and (np.unpackbits(codes ^ packed).mean() < 0.01)


def test_run_without_artifact_is_one_line_error(runs: Path, tmp_path: Path) -> None:
    folder = tmp_path / "old"
    shutil.copytree(run_folder(runs, "dpsh"), folder)
    record = json.loads((folder / RECORD).read_text())
    del record["artifacts"]
    (folder / RECORD).write_text(json.dumps(record))
    (folder / MODEL).unlink()
    from click.testing import CliRunner

    from hashbench.cli import main

    for args in (["export", str(folder), "--out", str(tmp_path / "m.pt")], ["search", str(folder), "--item", "0"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1
        message = result.output.strip()
        assert len(message.splitlines()) == 1 and str(folder) in message and "--force" in message


def test_frozen_pretrained_backbone_is_kept_by_name_not_copied(runs: Path) -> None:
    """Every run of a frozen grid shares its backbone: the artifact names the weights (here a
    file) instead of holding a copy, and the model rebuilt from them gives the run's codes."""
    folder = runs / "digits" / "dpsh+frozen" / "16" / "seed0"
    payload = torch.load(folder / MODEL, map_location="cpu", weights_only=True)
    assert payload["frozen"] and payload["backbone_state"] is None
    assert payload["weights_file"] == str(runs.parent / "small_cnn.pth")
    fine_tuned = read_record(run_folder(runs, "dpsh"))["artifacts"]["model"]["bytes"]
    assert read_record(folder)["artifacts"]["model"]["bytes"] < fine_tuned / 2
    pixels, packed = database_pixels(folder)
    assert np.array_equal(encode_in_batches(load_model(folder), pixels), packed)


@pytest.mark.parametrize("seed", [0, 1])
def test_frozen_random_backbone_is_kept_and_each_seed_has_its_own_features(runs: Path, seed: int) -> None:
    """A randomly initialised backbone is the seed's: the artifact holds its state, and the
    feature cache keys it by its values, so seed 1's codes come from seed 1's backbone (they
    came from seed 0's cached features, and the kept model gave other codes)."""
    folder = runs / "digits" / "dpsh+frozen-random" / "16" / f"seed{seed}"
    assert read_record(folder)["backbone"]["weights"] == "random init"
    assert torch.load(folder / MODEL, map_location="cpu", weights_only=True)["backbone_state"] is not None
    pixels, packed = database_pixels(folder)
    assert np.array_equal(encode_in_batches(load_model(folder), pixels), packed)


def test_export_never_replaces_a_file_without_force(tmp_path: Path) -> None:
    out = tmp_path / "kept.pt"
    out.write_bytes(b"the user's file")
    (tmp_path / "run").mkdir()
    from click.testing import CliRunner

    from hashbench.cli import main

    result = CliRunner().invoke(main, ["export", str(tmp_path / "run"), "--out", str(out)])
    assert result.exit_code == 1 and result.output.strip() == f"Error: {out} exists; --force replaces it"
    assert out.read_bytes() == b"the user's file"


@pytest.fixture(scope="module")
def list_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs on a list-file dataset of 56x56 images (stored, as every file, at 256 px), fine-tuned
    and frozen (small_cnn with the dataset's DEFAULT weights: it has none, so random init)."""
    root = tmp_path_factory.mktemp("export_list")
    data = make_list_dataset(root / "data", {"train": [[1, 0], [0, 1]] * 6, "test": [[1, 0], [0, 1]] * 2,
                                             "database": [[1, 0], [0, 1]] * 5}, size=56)
    for mode in ("--fine-tune", "--frozen-backbone"):
        result = invoke("run", "--methods", "dpsh", "--bits", "16", "--epochs", "1", "--datasets", f"listfile:{data}",
                        "--backbone", "small_cnn", "--set", "image_size=32", mode, "--set", f"tag={mode[2:]}",
                        "--results", root / "r", "--no-progress")
        assert result.exit_code == 0, result.output
    return root / "r"


@pytest.fixture(scope="module")
def list_run(list_runs: Path) -> Path:
    (record,) = list_runs.glob("*/dpsh+fine-tune/16/seed0/result.json")
    return record.parent


def test_frozen_random_init_on_a_list_file_is_searchable(list_runs: Path) -> None:
    """DEFAULT weights of a backbone without pretrained ones: the record says random init and
    the artifact keeps the backbone's state (it was once kept by the name 'random init')."""
    (record,) = list_runs.glob("*/dpsh+frozen-backbone/16/seed0/result.json")
    assert read_record(record.parent)["backbone"]["weights"] == "random init"
    pixels, packed = original_images(record.parent)
    assert np.array_equal(encode_in_batches(load_model(record.parent), pixels), packed)
    assert invoke("search", record.parent, "--item", "12", "--topk", "2").exit_code == 0


def original_images(folder: Path) -> tuple[torch.Tensor, np.ndarray]:
    """The database image files of a list-file run decoded at their own size, and its saved packed codes."""
    with np.load(folder / "codes.npz") as codes:
        index, packed = codes["database_index"], codes["database_codes"]
    files = load_dataset(read_record(folder)["config"]["dataset"]).image_files
    pixels = [torch.from_numpy(np.array(Image.open(files[i]).convert("RGB"))).permute(2, 0, 1) for i in index]
    return torch.stack(pixels), packed


def test_exported_module_takes_list_file_images_at_their_own_size(list_run: Path, tmp_path: Path) -> None:
    """The run decoded its 56x56 files at 256 px (Pillow, bilinear), then resized to 32 px: the
    exported module does both, so the original files give the saved codes bit for bit."""
    pixels, packed = original_images(list_run)
    assert pixels.shape[-2:] == (56, 56)
    out = tmp_path / "model.pt"
    assert invoke("export", list_run, "--format", "torchscript", "--out", out).exit_code == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(out))
    assert np.array_equal(encode_in_batches(module, pixels), packed)
    assert np.array_equal(encode_in_batches(load_model(list_run), pixels), packed)
    files = load_dataset(read_record(list_run)["config"]["dataset"]).image_files
    stored = torch.stack([decode_image(file, 256) for file in files[:8]])  # as the runner fed them
    backbone = build_backbone("small_cnn")
    expected = ImageTransform(32, backbone.mean, backbone.std)(stored, train=False)
    with torch.no_grad():
        own_size = torch.stack([torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1)
                                for f in files[:8]])
        assert torch.equal(module.preprocess(own_size), expected)


@pytest.mark.parametrize(("height", "width", "size"), [(56, 56, 256), (300, 200, 256), (513, 100, 256),
                                                       (200, 300, 64), (1000, 700, 256), (7, 9, 8), (56, 40, 32)])
def test_pil_resize_is_pillows_bilinear_resize_bit_for_bit(height: int, width: int, size: int) -> None:
    rng = np.random.default_rng(height * width)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    resized = pil_resize(torch.from_numpy(image).permute(2, 0, 1)[None], size, pillow_orders_passes())
    assert np.array_equal(resized[0].permute(1, 2, 0).numpy(), expected)


def test_stored_size_of_a_file_dataset_is_known_without_decoding(tmp_path: Path) -> None:
    """A frozen run whose features came from the cache never loads its images: its model still
    records the side files are decoded at, so that export and search resize as training did."""
    data = load_dataset(f"listfile:{make_list_dataset(tmp_path, {'train': [[1]], 'test': [[1]], 'database': [[1]]})}")
    assert stored_image_size(data) == 256 and "images" not in data.__dict__
