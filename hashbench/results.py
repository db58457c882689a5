"""The results store: one folder per run, one JSON record, the codes beside it.

Layout: ``<root>/<dataset>/<method>[+<tag>]/<bits>/seed<seed>/`` holding ``result.json``,
``codes.npz`` (bit-packed query and database codes, labels and split indices),
``log.txt``, ``model.pt`` (unless ``keep_model=false``), while training ``checkpoint.pt``,
and with ``tensorboard=true`` ``tb/``. Every write is atomic; a record that is replaced
(``--force``) is first moved to ``history/`` beside it, never overwritten.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from hashbench.storage import atomic_write, file_sha256
from hashbench.validation import HashbenchError

RECORD = "result.json"
CODES = "codes.npz"
CHECKPOINT = "checkpoint.pt"
LOG = "log.txt"
MODEL = "model.pt"  # the trained hash function of a finished run (hashbench.deploy.model)
TB_DIR = "tb"  # TensorBoard event files of a run with tensorboard=true (hashbench.engine.tracking)
SCHEMA_VERSION = 2
#: Keys without which a record cannot be listed, compared or reported.
REQUIRED_KEYS = ("method", "dataset", "bits", "seed", "status")


class DamagedRecordError(HashbenchError):
    """A ``result.json`` that is no readable record (torn, emptied, edited by hand)."""


class DamagedArtifactError(HashbenchError):
    """A file of a run (codes, model) that cannot be read or does not match the record's digest."""


def warn(message: str) -> None:
    """One line on stderr, for a reader of many runs that skips a damaged one and goes on."""
    print(f"warning: {message}", file=sys.stderr)


def slug(name: str) -> str:
    """A dataset name safe as one folder name (``listfile:/a/b`` -> ``listfile_a_b``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")


def run_dir(root: str | Path, dataset: str, method: str, bits: int, seed: int, tag: str | None = None) -> Path:
    """``<root>/<dataset>/<method>[+<tag>]/<bits>/seed<seed>``: a tagged variant grid
    (e.g. every method with one shared head) lives beside the untagged runs."""
    name = method if tag is None else f"{method}+{slug(tag)}"
    return Path(root) / slug(dataset) / name / str(bits) / f"seed{seed}"


def parse_record(path: Path) -> dict[str, Any]:
    """The record in the file ``path``, or a :class:`DamagedRecordError` naming it."""
    try:
        record = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DamagedRecordError(f"{path} is damaged ({str(err).splitlines()[0]})") from None
    if not isinstance(record, dict):
        raise DamagedRecordError(f"{path} is damaged (not a JSON object)")
    missing = [key for key in REQUIRED_KEYS if key not in record]
    if missing:
        raise DamagedRecordError(f"{path} is damaged (no {', '.join(missing)})")
    return record


def read_record(folder: Path) -> dict[str, Any] | None:
    """The run's record, None when there is none, a :class:`DamagedRecordError` when it cannot be read."""
    path = folder / RECORD
    if not path.is_file():
        return None
    return parse_record(path)


def archive_previous(folder: Path) -> None:
    """Move an existing record, its codes, its model and its TensorBoard logs to
    ``history/<finished time>/`` (``history/damaged-<file time>/`` for a record that cannot be read)."""
    path = folder / RECORD
    if not path.is_file():
        return
    try:
        timing = read_record(folder).get("timing")
        finished = timing.get("finished_at", "unknown") if isinstance(timing, dict) else "unknown"
    except DamagedRecordError:
        modified = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
        finished = f"damaged-{modified}"
    stamp = slug(str(finished))
    target = folder / "history" / stamp
    suffix = 1
    while target.exists():
        target = folder / "history" / f"{stamp}-{suffix}"
        suffix += 1
    target.mkdir(parents=True)
    for name in (RECORD, CODES, MODEL, TB_DIR):
        if (folder / name).exists():
            shutil.move(str(folder / name), str(target / name))


@dataclass
class Record:
    """A run's ``result.json`` (schema 2), finished (``done``) or ``failed``: what ran (config
    and its fingerprint, method, dataset, code length, seed, versions), how it ended (status,
    reason, timing) and, once the run was built, on what (protocol, backbone, device, world
    size, history) and, once it finished, what it measured (metrics, curves) and what it kept
    (artifacts: codes and model, each with file, bytes and sha256). Records are read back as
    plain dicts (:func:`read_record`): older schemas lack some keys."""

    method: str
    tag: str | None
    method_info: dict[str, Any]
    dataset: str
    bits: int
    seed: int
    config: dict[str, Any]
    fingerprint: str
    status: str
    versions: dict[str, str | None]
    timing: dict[str, Any]
    reason: str | None = None
    protocol: dict[str, Any] | None = None
    backbone: dict[str, Any] | None = None
    history: list[dict[str, Any]] | None = None
    device: str | None = None
    world_size: int | None = None
    metrics: dict[str, Any] | None = None
    curves: dict[str, Any] | None = None
    artifacts: dict[str, Any] | None = None
    schema: int = SCHEMA_VERSION

    #: Keys written even when None.
    ALWAYS: ClassVar[tuple[str, ...]] = ("tag",)

    def as_dict(self) -> dict[str, Any]:
        return {key: value for key, value in dataclasses.asdict(self).items()
                if value is not None or key in self.ALWAYS}


def write_record(folder: Path, record: Record | dict[str, Any]) -> None:
    """Write a run's record atomically (a dict: a record of another schema, e.g. in tests)."""
    with atomic_write(folder / RECORD) as handle:
        json.dump(record.as_dict() if isinstance(record, Record) else record, handle, indent=2, sort_keys=True,
                  default=_json_default)
        handle.write("\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_arrays(path: Path, **arrays: np.ndarray) -> dict[str, Any]:
    """Write ``arrays`` to the npz file ``path`` atomically; bool code arrays are bit-packed
    (``<name>`` + ``<name>_bits``), others stored as given. Returns what a record states about
    the file: ``{"file", "bytes", "sha256"}``."""
    stored: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        if array.dtype == bool:
            stored[name] = np.packbits(array, axis=1)
            stored[f"{name}_bits"] = np.array(array.shape[1])
        else:
            stored[name] = array
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **stored)
    data = buffer.getbuffer()
    with atomic_write(path, "wb") as handle:
        handle.write(data)
    return {"file": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def check_artifact(path: Path, info: dict[str, Any]) -> None:
    """Raise a :class:`DamagedArtifactError` unless ``path`` has the size and sha256 that
    ``info`` (a record's ``artifacts`` entry) states."""
    if not path.is_file():
        raise DamagedArtifactError(f"{path} is missing; rerun the run with --force")
    if path.stat().st_size != info.get("bytes") or file_sha256(path) != info.get("sha256"):
        raise DamagedArtifactError(f"{path} is damaged (its sha256 differs from the record's); "
                                   "rerun the run with --force")


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an npz file written by :func:`save_arrays`, bit-packed codes unpacked
    back to bool (N, bits); a file that cannot be read is a :class:`DamagedArtifactError`."""
    try:
        with np.load(path) as data:
            raw = {name: data[name] for name in data.files}
    except Exception as err:  # numpy and zipfile raise many types (an empty file: EOFError)
        detail = (str(err).splitlines() or [""])[0] or type(err).__name__
        raise DamagedArtifactError(f"{path} cannot be read ({detail})") from None
    out = {}
    for name, array in raw.items():
        if name.endswith("_bits"):
            continue
        if f"{name}_bits" in raw:
            out[name] = np.unpackbits(array, axis=1, count=int(raw[f"{name}_bits"])).astype(bool)
        else:
            out[name] = array
    return out


def save_codes(folder: Path, **arrays: np.ndarray) -> dict[str, Any]:
    """A run's ``codes.npz`` (:func:`save_arrays`); returns the record's ``artifacts.codes``."""
    return save_arrays(folder / CODES, **arrays)


def load_codes(folder: Path) -> dict[str, np.ndarray]:
    """The arrays of a run's ``codes.npz``, codes as bool (N, bits), checked against the
    digest of the record's ``artifacts.codes`` (older records state none)."""
    record = read_record(folder)
    info = ((record or {}).get("artifacts") or {}).get("codes")
    if info:
        check_artifact(folder / CODES, info)
    return load_arrays(folder / CODES)


#: How a reader of many runs loads their codes: :func:`load_codes`, or a :class:`CodesReader` (None: skip the run).
CodesLoader = Callable[[Path], "dict[str, np.ndarray] | None"]


class CodesReader:
    """``load_codes`` for a reader of many runs: damaged codes give None and one warning, once per run."""

    def __init__(self) -> None:
        self.damaged: set[Path] = set()

    def __call__(self, folder: Path) -> dict[str, np.ndarray] | None:
        folder = Path(folder)
        if folder in self.damaged:
            return None
        try:
            return load_codes(folder)
        except HashbenchError as err:
            self.damaged.add(folder)
            warn(f"{err}; skipped")
            return None


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for package in ("hashbench", "torch", "torchvision", "numpy", "numba"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    out["git_commit"] = commit or None
    return out


def iter_records(root: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``(run folder, record)`` under ``root`` in path order; archived records in
    ``history/`` are skipped, and so is a record that vanishes between listing and reading
    (another process's ``--force`` archives it just before writing the new one) and, with a
    warning on stderr, a damaged one."""
    found = []
    for path in sorted(Path(root).glob(f"**/{RECORD}")):
        if "history" in path.relative_to(root).parts:
            continue
        try:
            found.append((path.parent, parse_record(path)))
        except FileNotFoundError:
            continue
        except DamagedRecordError as err:
            warn(f"{err}; skipped")
    return found


def load_records(root: str | Path) -> pd.DataFrame:
    """Every record under ``root`` as one row: identity, status, metrics, timing, backbone."""
    return records_frame(iter_records(root))


#: The identity and normalised columns of :func:`records_frame`, before the ``metric.*`` and ``timing.*`` ones.
RECORD_COLUMNS = ["method", "dataset", "bits", "seed", "tag", "ablation_of", "supervised", "family", "status", "reason",
                  "backbone", "weights", "topk", "map_index", "map_expected", "path"]


def _map_at_topk(record: dict[str, Any], topk: int | None) -> tuple[float | None, float | None]:
    """``(mAP@K with ties by database index, its expectation over tie orders)``, whatever K is.

    Schema 2 stores both; a schema-1 record stores one, ``map``, computed with the run's ``ties`` setting.
    """
    metrics = record.get("metrics") or {}
    if record.get("schema", 1) >= 2:
        return metrics.get(f"map@{topk}"), metrics.get(f"map_expected@{topk}")
    ties = (record.get("config") or {}).get("ties", "index")
    value = metrics.get("map")
    return (value if ties == "index" else None), (value if ties == "expected" else None)


def registered_family(method: str) -> str:
    """The family of a method whose record predates ``method_info.family``: the registry's, or
    ``other`` for a method no installed package provides."""
    from hashbench.registry import METHODS, UnknownNameError

    try:
        return METHODS.get(method).family
    except (UnknownNameError, ImportError, AttributeError):
        return "other"


def records_frame(records: list[tuple[Path, dict[str, Any]]]) -> pd.DataFrame:
    """:func:`iter_records` output as one row per record (see :func:`load_records`).

    ``map_index`` and ``map_expected`` hold the record's mAP@K under each tie rule, so that
    tables need not know K; ``metric.<name>`` columns keep every stored metric as it is.
    """
    rows = []
    for folder, record in records:
        metrics = record.get("metrics") or {}
        method_info = record.get("method_info") or {}
        topk = metrics.get("topk", (record.get("protocol") or {}).get("topk"))
        map_index, map_expected = _map_at_topk(record, topk)
        row = {
            "method": record["method"],
            "dataset": record["dataset"],
            "bits": record["bits"],
            "seed": record["seed"],
            "tag": record.get("tag"),
            "ablation_of": method_info.get("ablation_of"),
            "supervised": method_info.get("supervised", True),
            "family": method_info.get("family") or registered_family(record["method"]),
            "status": record["status"],
            "reason": record.get("reason"),
            "backbone": (record.get("backbone") or {}).get("name"),
            "weights": (record.get("backbone") or {}).get("weights"),
            "topk": topk,
            "map_index": map_index,
            "map_expected": map_expected,
            "path": str(folder),
        }
        row.update({f"metric.{k}": v for k, v in metrics.items() if k != "topk"})
        row.update({f"timing.{k}": v for k, v in (record.get("timing") or {}).items()})
        rows.append(row)
    frame = pd.DataFrame(rows, columns=None if rows else RECORD_COLUMNS)
    return frame.astype({"map_index": float, "map_expected": float})
