"""Reading images and labels from where they live: sklearn's digits, image-folder trees,
tarballs of such trees, torchvision's CIFAR-10 files and DeepHash-style list files.

Decoded pixel arrays of small datasets are cached under ``HASHBENCH_CACHE`` (default
``~/.cache/hashbench``) keyed by a fingerprint of the source, written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hashbench.data.images import decode_rgb
from hashbench.storage import atomic_write, exclusive_lock
from hashbench.validation import HashbenchError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".gif", ".webp", ".tif", ".tiff")


def cache_dir() -> Path:
    path = Path(os.environ.get("HASHBENCH_CACHE", Path.home() / ".cache" / "hashbench"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class LabelledTree:
    """Images of an image-folder tree: ``<subset>/<class>/<file>``, in sorted order."""

    members: list[str]  # paths relative to the tree root (or tar member names)
    class_ids: np.ndarray  # int64, index into class_names
    subsets: np.ndarray  # subset name of each member
    class_names: list[str]


def _tree_from_names(names: list[str], where: str) -> LabelledTree:
    rows = []
    for name in names:
        parts = Path(name).parts
        if parts and parts[0] == ".":
            parts = parts[1:]
        if len(parts) == 3 and parts[2].lower().endswith(IMAGE_SUFFIXES):
            rows.append((parts[0], parts[1], name))
    if not rows:
        raise HashbenchError(f"no images laid out as <subset>/<class>/<file> in {where}")
    rows.sort()
    class_names = sorted({cls for _, cls, _ in rows})
    lookup = {cls: i for i, cls in enumerate(class_names)}
    return LabelledTree(
        members=[name for _, _, name in rows],
        class_ids=np.array([lookup[cls] for _, cls, _ in rows], dtype=np.int64),
        subsets=np.array([subset for subset, _, _ in rows]),
        class_names=class_names,
    )


def scan_tree(root: Path) -> LabelledTree:
    names = [str(p.relative_to(root)) for p in root.glob("*/*/*") if p.is_file()]
    return _tree_from_names(names, str(root))


def scan_tar(path: Path) -> LabelledTree:
    """The tree inside a tarball. Listing a gzipped tar reads all of it (4 s for CIFAR-10),
    so the member names are cached under the tarball's :func:`fingerprint`."""
    index = cache_dir() / f"tar-index-{fingerprint(path)}.json"
    try:
        names = json.loads(index.read_text())
    except (OSError, ValueError):  # absent or torn: list the tarball again
        with tarfile.open(path) as tar:
            names = [m.name for m in tar.getmembers() if m.isfile()]
        with atomic_write(index, "w") as handle:
            json.dump(names, handle)
    return _tree_from_names(names, str(path))


def _stack(arrays: list[np.ndarray], where: str) -> np.ndarray:
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise HashbenchError(f"images in {where} differ in size ({sorted(shapes)[:3]}...); use a list file instead")
    return np.stack(arrays).transpose(0, 3, 1, 2).copy()


def fingerprint(path: Path) -> str:
    """Cheap identity of a file or folder: path, size and mtime of the file or of every file."""
    sha = hashlib.sha256(str(path.resolve()).encode())
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        st = f.stat()
        sha.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    return sha.hexdigest()[:16]


def cached_pixels(tree: LabelledTree, source: Path, key: str) -> torch.Tensor:
    """All images of ``tree`` as a uint8 (N, 3, H, W) tensor, decoded once and cached
    under ``key`` (the source's :func:`fingerprint`). Processes that start at once decode
    it once: the others wait on a lock, then read the cache."""
    cache = cache_dir() / f"pixels-{key}.npy"
    with exclusive_lock(cache.with_suffix(".lock")):
        if (pixels := _load_pixels(cache, len(tree.members))) is not None:
            return pixels
        if source.is_file():
            wanted = set(tree.members)
            by_name: dict[str, np.ndarray] = {}
            with tarfile.open(source) as tar:
                for member in tar:
                    if member.name in wanted:
                        by_name[member.name] = decode_rgb(tar.extractfile(member).read(), f"{source}:{member.name}")
            arrays = [by_name[name] for name in tree.members]
        else:
            arrays = [decode_rgb(source / name, str(source / name)) for name in tree.members]
        pixels = _stack(arrays, str(source))
        with atomic_write(cache, "wb") as handle:
            np.save(handle, pixels)
    return torch.from_numpy(pixels)


def _load_pixels(cache: Path, count: int) -> torch.Tensor | None:
    """The cached pixel array, or None when it is absent, torn or of another size."""
    try:
        pixels = np.load(cache, mmap_mode="r")
    except (ValueError, OSError):
        return None
    return torch.from_numpy(np.array(pixels)) if pixels.shape[0] == count else None  # a writable copy


def load_torchvision_cifar10(root: Path) -> tuple[torch.Tensor, np.ndarray, np.ndarray, list[str]]:
    """torchvision's CIFAR10 python batches: pixels, class ids, subsets, class names."""
    from torchvision.datasets import CIFAR10

    parts = [CIFAR10(str(root), train=train, download=False) for train in (True, False)]
    pixels = torch.from_numpy(np.concatenate([p.data for p in parts]).transpose(0, 3, 1, 2).copy())
    class_ids = np.concatenate([np.asarray(p.targets, dtype=np.int64) for p in parts])
    subsets = np.array(["train"] * len(parts[0]) + ["test"] * len(parts[1]))
    return pixels, class_ids, subsets, list(parts[0].classes)


def download_torchvision_cifar10(root: Path) -> None:
    """Fetch torchvision's CIFAR-10 python batches into ``root`` (checksummed by torchvision)."""
    from torchvision.datasets import CIFAR10

    root.mkdir(parents=True, exist_ok=True)
    CIFAR10(str(root), train=True, download=True)


#: The three files of a DeepHash / HashNet list folder, by role.
LIST_FILES = {"train": "train.txt", "query": "test.txt", "database": "database.txt"}
#: What ``hashbench data prepare`` writes beside the lists it made.
MANIFEST = "dataset.json"


@dataclass(frozen=True)
class ListFile:
    paths: list[Path]
    labels: np.ndarray  # (N, C) float32 multi-hot
    skipped: int = 0  # unreadable images left out (skip_corrupt)
    lines: list[int] = field(default_factory=list)  # the line number of each kept row
    outside: int = 0  # kept rows whose image lies outside the list folder (allow_outside_root)


def image_is_readable(path: Path) -> bool:
    try:
        decode_rgb(path, str(path))
    except HashbenchError:
        return False
    return True


def release_folder(folder: Path) -> Path | None:
    """The release folder that the ``dataset.json`` of a folder written by ``hashbench data
    prepare`` records, or None: prepare writes image paths relative to its output folder, and
    they lead into the release it read (``--from``), usually a sibling folder."""
    try:
        recorded = json.loads((folder / MANIFEST).read_text())["source"]["folder"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return Path(recorded) if isinstance(recorded, str) and Path(recorded).is_absolute() else None


def _split_line(line: str) -> tuple[list[str], str]:
    """A list-file line as (image path, labels...), and what is wrong with it ("" if nothing).
    A path holding spaces is written in double quotes: ``"my image.jpg" 0 1``."""
    text = line.strip()
    if not text.startswith('"'):
        return text.split(), ""
    end = text.find('"', 1)
    if end < 0:
        return [], "unclosed double quote in the image path"
    rest = text[end + 1:]
    if rest and not rest[0].isspace():
        return [], "expected a space after the quoted image path"
    return [text[1:end], *rest.split()], ""


def _label_error(labels: list[str]) -> str:
    """Why ``labels`` are not a row of 0/1 values; a path cut at a space says so."""
    first = next((i for i, v in enumerate(labels) if v in ("0", "1")), len(labels))
    if first and all(v in ("0", "1") for v in labels[first:]) and not all(_is_number(v) for v in labels[:first]):
        return (f"labels must be 0 or 1; got {' '.join(labels[:first])!r} before them: image paths with spaces "
                'must be quoted, e.g. "my image.jpg" 0 1')
    return f"labels must be 0 or 1; got {' '.join(labels)}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_list_file(path: Path, image_root: Path, check_files: bool = True, skip_corrupt: bool = False,
                   problems: list[tuple[str, str, str]] | None = None, *, allow_outside_root: bool = False,
                   release: Path | None = None) -> ListFile:
    """Parse a DeepHash/HashNet list file: ``relative/path l1 l2 ... lC`` per line (a path
    with spaces in double quotes), UTF-8.

    Every line must have the same label width and 0/1 labels, and (when ``check_files``)
    name an existing file; errors name the file and line. An image path must stay inside
    ``image_root`` (or ``release``, the release folder of a prepared folder): an absolute path
    or one that climbs out with ``..`` is an error unless ``allow_outside_root``. The test is
    on the text (symbolic links inside the folder are the folder's own choice). ``skip_corrupt``
    decodes each image and leaves out (and counts) the lines whose image cannot be read. Given
    a ``problems`` list, a bad line is appended to it as ``(kind, "file:line", message)`` and
    left out instead of stopping the read, so that ``hashbench data check`` names every one.
    """
    skipped = outside = 0
    if not path.is_file():
        raise HashbenchError(f"missing list file: {path}")
    paths: list[Path] = []
    rows: list[list[float]] = []
    numbers: list[int] = []
    width = None
    reported = len(problems or [])
    root = image_root.resolve()
    within = [root, *([release] if release is not None else [])]

    def bad(kind: str, where: str, message: str) -> None:
        if problems is None:
            raise HashbenchError(f"{where}: {message}")
        problems.append((kind, where, message))

    # Undecodable bytes become lone surrogates, so that each such line is named, not the file.
    text = path.read_bytes().decode("utf-8-sig", errors="surrogateescape")
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{path}:{number}"
        if any("\udc80" <= ch <= "\udcff" for ch in line):
            bad("malformed line", where, "not UTF-8 text (save the list file as UTF-8)")
            continue
        fields, error = _split_line(line)
        if error:
            bad("malformed line", where, error)
            continue
        if not fields:
            continue
        if len(fields) < 2:
            bad("malformed line", where, "expected an image path followed by 0/1 labels")
            continue
        if any(v not in ("0", "1") for v in fields[1:]):
            bad("malformed line", where, _label_error(fields[1:]))
            continue
        if width is None:
            width = len(fields) - 1
        elif len(fields) - 1 != width:
            bad("malformed line", where, f"{len(fields) - 1} labels, but earlier lines have {width}")
            continue
        # normpath, not resolve: the path as written decides ("a/../../b" climbs out)
        leaves = not any(Path(os.path.normpath(root / fields[0])).is_relative_to(folder) for folder in within)
        if leaves and not allow_outside_root:
            bad("path outside root", where, f"image path {fields[0]!r} leads outside {image_root} "
                "(allow_outside_root=true accepts it)")
            continue
        image = image_root / fields[0]
        if check_files and not image.is_file():
            bad("missing image", where, f"image file not found: {image}")
            continue
        if skip_corrupt and not image_is_readable(image):
            skipped += 1
            continue
        paths.append(image)
        outside += leaves
        rows.append([float(v) for v in fields[1:]])
        numbers.append(number)
    if not rows and len(problems or []) == reported:  # no line at all, not only bad ones
        raise HashbenchError(f"{path}: the list file is empty")
    labels = np.asarray(rows, dtype=np.float32).reshape(len(rows), width or 0)
    return ListFile(paths=paths, labels=labels, skipped=skipped, lines=numbers, outside=outside)
