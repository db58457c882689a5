"""What several test modules share: paths, the CLI runner, subprocess settings, tiny synthetic
datasets and results, and the loss-comparison helpers. Test modules import these from here,
never from one another or from conftest (which holds only fixtures)."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner, Result
from PIL import Image

from hashbench.cli import main
from hashbench.config import RunConfig
from hashbench.engine.runner import make_record
from hashbench.eval import evaluate
from hashbench.planning import CommandLine, plan_runs
from hashbench.results import run_dir, save_codes, write_record

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HASHBENCH_SHARED", REPO.parent / "shared"))
#: The quickstart's quick training recipe for digits (a small CNN from scratch, Adam, no
#: augmentation): for tests that need training quality on digits, not each method's own recipe.
DIGITS = ["--config", str(REPO / "experiments" / "digits.toml")]
#: Thread-pool sizes of the math libraries; a test's subprocesses share the cores with the
#: suite and each other, and oversubscribed pools made the suite several times slower.
THREAD_LIMITS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment to start a test's subprocess with: this one, one thread per pool."""
    return {**os.environ, **THREAD_LIMITS, **extra}


def invoke(*args: str) -> Result:
    """Run the CLI in-process; a failure shows its output in the assertion message."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


# --- tiny datasets ---------------------------------------------------------------------------

def make_list_dataset(root: Path, labels_by_role: dict[str, list[list[int]]], size: int = 12) -> Path:
    """Write tiny images and train/test/database list files under ``root``."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True, exist_ok=True)
    for role, rows in labels_by_role.items():
        lines = []
        for i, row in enumerate(rows):
            name = f"img/{role}_{i}.png"
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / name)
            lines.append(name + " " + " ".join(str(v) for v in row))
        (root / f"{role}.txt").write_text("\n".join(lines) + "\n")
    return root


def write_list_dataset(root: Path, corrupt: bool) -> Path:
    """60 JPEGs of three classes (30 train, 10 test, 20 database) and their list files;
    ``corrupt`` truncates database image 45 inside its header."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    lines = {"train": [], "test": [], "database": []}
    for i in range(60):
        role = "train" if i < 30 else ("test" if i < 40 else "database")
        cls = i % 3
        path = root / "img" / f"{i}.jpg"
        pixels = np.full((16, 16, 3), 60 + 80 * cls, dtype=np.uint8) + rng.integers(0, 20, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        lines[role].append(f"img/{i}.jpg " + " ".join("1" if c == cls else "0" for c in range(3)))
    if corrupt:
        data = (root / "img" / "45.jpg").read_bytes()  # a database image: every one is encoded
        (root / "img" / "45.jpg").write_bytes(data[:100])  # truncated inside the header
    for role, rows in lines.items():
        (root / f"{role}.txt").write_text("\n".join(rows) + "\n")
    return root


#: COCO 2014's 80 categories in id order, with their (non-contiguous) ids.
COCO_IDS = [*range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70, *range(72, 83),
            *range(84, 91)]
COCO_NAMES = ("person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign "
              "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella "
              "handbag tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard "
              "surfboard tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange "
              "broccoli carrot hot_dog pizza donut cake chair couch potted_plant bed dining_table toilet tv laptop "
              "mouse remote keyboard cell_phone microwave oven toaster sink refrigerator book clock vase scissors "
              "teddy_bear hair_drier toothbrush")
COCO_NAMES = [name.replace("_", " ") for name in COCO_NAMES.split()]


def save_image(path: Path, rng: np.random.Generator, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)


def make_coco_release(root: Path, per_subset: tuple[int, int] = (24, 12), unlabelled: int = 3, size: int = 8) -> Path:
    """annotations/instances_{train,val}2014.json over generated images; the first train image
    shows only a person (id 1), the last ``unlabelled`` images of each subset have no annotation."""
    rng = np.random.default_rng(0)
    categories = [{"id": i, "name": n, "supercategory": "x"} for i, n in zip(COCO_IDS, COCO_NAMES, strict=True)]
    rng.shuffle(categories)  # listing order must not matter
    for subset, count in zip(("train2014", "val2014"), per_subset, strict=True):
        images, annotations = [], []
        for k in range(count):
            image_id = 1000 * (subset == "val2014") + k + 1
            name = f"COCO_{subset}_{image_id:012d}.jpg"
            save_image(root / subset / name, rng, size)
            images.append({"id": image_id, "file_name": name, "width": size, "height": size})
            if k >= count - unlabelled:
                continue
            cats = [1] if (subset, k) == ("train2014", 0) else rng.choice(COCO_IDS, rng.integers(1, 4), replace=False)
            annotations += [{"id": len(annotations) + 1, "image_id": image_id, "category_id": int(c), "iscrowd": 0}
                            for c in cats]
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{subset}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return root


# --- synthetic results ---------------------------------------------------------------------

#: The ablation a fake run's method_info states (as the registry would say for these names).
ABLATION_OF = {"mlh-center": "mlh"}


def fake_run(root: Path, method: str, bits: int, seed: int, quality: float, *, dataset: str = "toy",
             tag: str | None = None, protocol: dict | None = None, supervised: bool = True) -> dict[str, float]:
    """Codes = class prototype with a fraction of bits flipped; a better method flips fewer.

    The database is sorted by descending class and most queries are of class 0, so breaking
    ties by database index ranks relevant items last and ``map@K`` falls below ``map_expected@K``.
    ``protocol`` adds keys to the record's protocol, which by default states only K (as a
    hand-made record might).
    """
    rng = np.random.default_rng(zlib.crc32(f"{dataset}/{tag}/{method}/{bits}/{seed}".encode()))
    prototypes = rng.random((4, bits)) < 0.5
    q_cls = rng.choice(4, size=40, p=[0.7, 0.1, 0.1, 0.1])
    d_cls = np.sort(rng.integers(0, 4, 300))[::-1]
    q = prototypes[q_cls] ^ (rng.random((40, bits)) < quality)
    d = prototypes[d_cls] ^ (rng.random((300, bits)) < quality)
    ql, dl = np.eye(4, dtype=bool)[q_cls], np.eye(4, dtype=bool)[d_cls]
    folder = run_dir(root, dataset, method, bits, seed, tag=tag)
    save_codes(folder, query_codes=q, database_codes=d, query_labels=ql, database_labels=dl)
    by_index = evaluate(q, d, ql, dl, topks=(100,), ties="index")
    expected = evaluate(q, d, ql, dl, topks=(100,), ties="expected")
    write_record(folder, {
        "schema": 2, "method": method, "dataset": dataset, "bits": bits, "seed": seed, "tag": tag, "status": "done",
        "method_info": {"ablation_of": ABLATION_OF.get(method), "supervised": supervised},
        "backbone": {"name": "small_cnn", "weights": None},
        "protocol": {"topk": 100, **(protocol or {})},
        "metrics": {"topk": 100, **by_index.as_dict(), "map_expected@100": expected.maps[100]},
        "history": [{"epoch": e + 1, "loss": 1.0 / (e + 1)} for e in range(3)],
        "timing": {"train_s": 1.0},
    })
    return {"index": by_index.maps[100], "expected": expected.maps[100]}


def planned(methods: str, bits: int = 16, **values) -> list[RunConfig]:
    """The configs of ``hashbench run --methods METHODS --bits BITS`` with ``values`` as options or
    ``--set`` would give them (on digits), resolved and validated as the command resolves them."""
    return [run.config for run in plan_runs(CommandLine(grid={"methods": methods.split(","), "bits": [bits]},
                                                        values=values))]


def record_done(config: RunConfig, root: Path) -> Path:
    """A finished record of ``config`` under ``root`` as the runner writes one, without training
    (no protocol, metrics, codes or model): what decides whether a run is skipped or refused."""
    folder = config.folder(root)
    write_record(folder, make_record(config, status="done"))
    return folder


# --- losses against their transcriptions ---------------------------------------------------

def labels_for(multi_label: bool, n: int = 6, classes: int = 4, seed: int = 0) -> torch.Tensor:
    """Random one-hot rows, or multi-hot rows with at least one label each."""
    g = torch.Generator().manual_seed(seed)
    if multi_label:
        y = (torch.rand(n, classes, generator=g) < 0.4).double()
        y[y.sum(1) == 0, 0] = 1
        return y
    return F.one_hot(torch.randint(0, classes, (n,), generator=g), classes).double()


def shares(a: torch.Tensor, b: torch.Tensor) -> float:
    """1.0 if the two label rows share a label, else 0.0."""
    return float(any(x > 0 and y > 0 for x, y in zip(a.tolist(), b.tolist(), strict=True)))


def assert_same_value_and_grad(fast, slow, *inputs: torch.Tensor) -> None:
    """``fast`` and ``slow`` give the same value and the same gradients at ``inputs``."""
    a = [x.clone().requires_grad_(True) for x in inputs]
    b = [x.clone().requires_grad_(True) for x in inputs]
    va, vb = fast(*a), slow(*b)
    assert va.item() == pytest.approx(vb.item(), rel=1e-9, abs=1e-12)
    ga = torch.autograd.grad(va, a)
    gb = torch.autograd.grad(vb, b)
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-7, atol=1e-10)
