"""``hashbench data check``: is a dataset what its protocol says it is?

For any dataset hashbench reads, a :class:`CheckReport` gives the split sizes against the
documented ones (:data:`hashbench.data.standard.PROTOCOLS` for a named protocol, the recorded
counts of a prepared folder's ``dataset.json``), the images that are missing or do not decode,
label statistics (per-class counts, labels per image, items without a label), the overlap of
queries and database (none in every standard protocol), where the training images sit, and
the digests of the lists. List files are read with the loader's own parser in its collecting
mode, so a single run names every bad line as ``file:line`` instead of stopping at the first;
other datasets are loaded exactly as ``hashbench run`` loads them.

``hashbench run`` checks every dataset it loads with the same functions
(:func:`screen_for_run`): what makes its numbers meaningless stops it, the rest it prints and
keeps in the record (``protocol.warnings``); ``data check`` counts all of it as problems.

* No item of a role has a label: for the queries or the database an error (no query has a
  relevant item, so the mAP is 0 whatever the codes); for the training items an error for a
  supervised method (nothing to learn from) and a warning for a label-free one.
* Some items without a label: a warning (such a query scores 0; such a database item is
  relevant to no query).
* The same image twice in one list: a warning (it counts twice in training or in the ranking).
* The same image both a query and a database item: a warning, loud, as the query finds itself
  at distance 0 and every method's mAP rises; no standard protocol has one, but a custom
  retrieval set may mean it, and the comparison between methods on it stays fair.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hashbench.data.datasets import HashingDataset, default_data_root, get_dataset, list_folder, load_dataset
from hashbench.data.images import FileImages, decode_rgb
from hashbench.data.sources import LIST_FILES, MANIFEST, read_list_file, release_folder
from hashbench.data.standard import LIST_PRESETS, PROTOCOLS, Protocol
from hashbench.storage import file_sha256
from hashbench.validation import HashbenchError

ROLES = ("train", "query", "database")
#: Problem kinds, in the order a report lists them: lines first, then the dataset as a whole.
KINDS = ("malformed line", "path outside root", "missing image", "unreadable image", "query/database overlap",
         "duplicate line", "unlabelled image", "no labels", "no training labels", "train/database conflict",
         "wrong size", "wrong class count", "changed list")


@dataclass(frozen=True)
class Problem:
    kind: str  # one of KINDS
    where: str  # "file:line", a file, or the dataset's name
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class CheckReport:
    """What ``hashbench data check`` prints: report lines, then the problems found."""

    dataset: str
    lines: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def counts(self) -> Counter:
        return Counter(problem.kind for problem in self.problems)

    def text(self, limit: int = 20) -> str:
        out = list(self.lines)
        if not self.problems:
            return "\n".join([*out, "problems: none"])
        ordered = sorted(self.problems, key=lambda p: KINDS.index(p.kind))
        out.append(f"problems ({len(ordered):,}):")
        out += [f"  {problem}" for problem in ordered[:limit]]
        if len(ordered) > limit:
            out.append(f"  ... and {len(ordered) - limit:,} more")
        return "\n".join(out)

    def summary(self) -> str:
        """One line for the error exit: the count of each kind and the first problem."""
        counts = self.counts()
        kinds = ", ".join(f"{counts[k]:,} {k}{'s' if counts[k] > 1 and not k.endswith('s') else ''}"
                          for k in KINDS if counts[k])
        first = min(self.problems, key=lambda p: KINDS.index(p.kind))
        total = len(self.problems)
        return f"{self.dataset}: {total:,} problem{'s' if total > 1 else ''} ({kinds}); first: {first}"


@dataclass
class _Items:
    """One role's items: an identity each (an image path or a dataset index), labels and where
    each comes from (``file:line`` or ``role[i]``)."""

    keys: list[Any]
    labels: np.ndarray
    where: list[str]
    source: str  # the list file, or the role's name


def check_dataset(name: str, data_root: Path | None = None, *, split_seed: int = 0, decode: bool = True,
                  workers: int | None = None, allow_outside_root: bool = False) -> CheckReport:
    """Check ``name`` (any dataset name hashbench reads) under ``data_root``. ``decode`` decodes
    every image (finds truncated files), else images are only required to exist;
    ``allow_outside_root`` accepts list-file image paths that lead outside the list folder."""
    _, folder = get_dataset(name)
    root = folder or data_root or default_data_root()
    protocol = PROTOCOLS.get(name)
    if name in LIST_PRESETS or name.startswith("listfile:"):
        folder = list_folder(name, root) if name in LIST_PRESETS else root
        return _check_lists(name, folder, protocol, decode, workers, allow_outside_root)
    return _check_loaded(name, root, split_seed, protocol, decode, workers)


def dataset_problems(data: HashingDataset) -> list[Problem]:
    """The label and item checks of ``hashbench data check`` on a loaded dataset: roles without
    any label, unlabelled items, an image listed twice in one list, queries that are also
    database items (see the module docstring)."""
    roles = _loaded_roles(data)
    return [*_label_problems(roles, None), *_item_problems(roles)]


def screen_for_run(data: HashingDataset, *, supervised: bool) -> list[str]:
    """Refuse a dataset on which a run would mean nothing (a one-line error), else return the
    warnings about it: one line per kind of problem and file, with its count and first case."""
    problems = dataset_problems(data)
    for problem in problems:
        if problem.kind == "no labels" or (problem.kind == "no training labels" and supervised):
            raise HashbenchError(f"{data.name}: {problem}")
    groups: dict[tuple[str, str], list[Problem]] = {}
    for problem in sorted(problems, key=lambda p: KINDS.index(p.kind)):
        groups.setdefault((problem.kind, _file_of(problem.where)), []).append(problem)
    return [str(found[0]) if len(found) == 1 else f"{file}: {len(found):,} {kind}s; first {found[0]}"
            for (kind, file), found in groups.items()]


def _file_of(where: str) -> str:
    """The file (or role) of a problem's place: ``file:line`` or ``role[i]`` without the line or index."""
    return re.sub(r"(:\d+|\[\d+\])$", "", where)


def _loaded_roles(data: HashingDataset) -> dict[str, _Items]:
    """Each role's items of a loaded dataset: by image file and ``file:line`` for list files,
    else by index and ``role[i]``."""
    labels = data.labels.numpy()
    roles = {}
    for role, idx in zip(ROLES, (data.split.train, data.split.query, data.split.database), strict=True):
        if data.files is not None and data.origins is not None:
            where = [data.origins[i] for i in idx]
            roles[role] = _Items([data.files[i] for i in idx], labels[idx], where,
                                 _file_of(where[0]) if where else role)
        else:
            roles[role] = _Items([int(i) for i in idx], labels[idx], [f"{role}[{i}]" for i in range(len(idx))], role)
    return roles


def _unreadable(paths: list[str], workers: int | None) -> dict[str, str]:
    """The error of every image (path) that does not decode, decoded in threads (PIL
    releases the GIL while it decodes)."""

    def attempt(path: str) -> str:
        try:
            decode_rgb(Path(path), path)
        except HashbenchError as err:
            return str(err)
        return ""

    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        errors = list(pool.map(attempt, paths))
    return {path: error for path, error in zip(paths, errors, strict=True) if error}


def _check_lists(name: str, folder: Path, protocol: Protocol | None, decode: bool,
                 workers: int | None, allow_outside_root: bool) -> CheckReport:
    if not folder.is_dir():
        raise HashbenchError(f"data root for {name} not found: {folder}")
    report = CheckReport(name, [f"{name}: list files in {folder}"])
    found: list[tuple[str, str, str]] = []
    roles, sizes, outside = {}, {}, 0
    release = release_folder(folder)
    for role, file in LIST_FILES.items():
        before = len(found)
        listed = read_list_file(folder / file, folder, problems=found, release=release,
                                allow_outside_root=allow_outside_root)
        roles[role] = _Items([os.path.normpath(p) for p in listed.paths], listed.labels,
                             [f"{folder / file}:{n}" for n in listed.lines], str(folder / file))
        sizes[role] = len(listed.paths) + len(found) - before  # every entry, its image there or not
        outside += listed.outside
    report.problems += [Problem(*item) for item in found]
    if outside:
        report.lines.append(f"{outside:,} images outside {folder}" + (f" and {release}" if release else "")
                            + " (--allow-outside-root)")
    manifest = _read_manifest(folder)
    against = f"the standard {name} protocol ({protocol.source})" if protocol else ""
    if protocol is None and manifest is not None:  # a prepared folder: its recorded counts and classes
        protocol, against = _recorded(manifest), MANIFEST
    _sizes(report, sizes, protocol.sizes() if protocol else None, against, folder)
    lines = sum(sizes.values())
    distinct = sorted({key for items in roles.values() for key in items.keys})
    bad = _unreadable(distinct, workers) if decode else {}
    for items in roles.values():
        for key, where in zip(items.keys, items.where, strict=True):
            if key in bad:
                report.problems.append(Problem("unreadable image", where, bad[key]))
    missing = sum(p.kind == "missing image" for p in report.problems)
    report.lines.append(f"images: {lines:,} lines, {len(distinct):,} distinct files; {missing:,} missing, "
                        + (f"{len(bad):,} unreadable" if decode else "not decoded (--no-decode)"))
    _labels(report, roles, protocol, manifest["classes"] if manifest else None, folder)
    _overlap(report, roles, protocol)
    digests = {file: file_sha256(folder / file) for file in LIST_FILES.values()}
    report.lines += [f"list {file}: sha256 {digest}" for file, digest in digests.items()]
    if manifest is not None:
        changed = [file for file, digest in digests.items() if manifest["lists"].get(file, {}).get("sha256") != digest]
        report.lines.append(f"{MANIFEST}: preset {manifest['preset']}, seed {manifest['seed']}; "
                            + (f"{len(changed)} of the lists changed since" if changed else "the lists as recorded"))
        report.problems += [Problem("changed list", str(folder / file), f"its sha256 is not the one {MANIFEST} "
                                    "records (changed after hashbench data prepare wrote it)") for file in changed]
    return report


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    """A prepared folder's dataset.json, or None; one that lacks what prepare writes is an error."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        valid = (manifest["preset"] in PROTOCOLS and all(isinstance(manifest["counts"][r], int) for r in ROLES)
                 and isinstance(manifest["classes"], list) and isinstance(manifest["lists"], dict))
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise HashbenchError(f"{path}: not a dataset.json written by hashbench data prepare")
    return manifest


def _recorded(manifest: dict[str, Any]) -> Protocol:
    """The protocol a prepared folder claims: its recorded counts and classes, its preset's rules."""
    preset = PROTOCOLS[manifest["preset"]]
    counts = manifest["counts"]
    return Protocol(counts["train"], counts["query"], counts["database"], preset.topk, len(manifest["classes"]),
                    preset.train_in_database, MANIFEST)


def _check_loaded(name: str, root: Path, split_seed: int, protocol: Protocol | None, decode: bool,
                  workers: int | None) -> CheckReport:
    data = load_dataset(name, root, split_seed)
    report = CheckReport(name, [f"{name}: {data.source}"])
    roles = _loaded_roles(data)
    against = f"the standard {name} protocol ({protocol.source})" if protocol else ""
    _sizes(report, data.split.sizes(), protocol.sizes() if protocol else None, against, name)
    if not decode:
        report.lines.append("images: not decoded (--no-decode)")
    else:
        try:
            images = data.images
        except HashbenchError as err:  # a tensor store decodes everything at once
            report.problems.append(Problem("unreadable image", name, str(err)))
        else:
            if isinstance(images, FileImages):
                bad = _unreadable([str(p) for p in images.paths], workers)
                report.problems += [Problem("unreadable image", path, error) for path, error in bad.items()]
                report.lines.append(f"images: {len(images):,} files, {len(bad):,} unreadable")
            else:
                report.lines.append(f"images: {len(images):,} decoded")
    _labels(report, roles, protocol, data.class_names, name)
    _overlap(report, roles, protocol)
    report.lines.append(f"split digest {data.split.digest()} (split seed {split_seed})")
    return report


def _sizes(report: CheckReport, sizes: dict[str, int], expected: dict[str, int] | None, against: str,
           where: Path | str) -> None:
    parts = []
    for role in ROLES:
        size = sizes[role]
        if expected is None:
            parts.append(f"{role} {size:,}")
            continue
        parts.append(f"{role} {size:,} (expected {expected[role]:,})")
        if size != expected[role]:
            file = Path(where) / LIST_FILES[role] if isinstance(where, Path) else where
            report.problems.append(Problem("wrong size", str(file), f"{role} has {size:,} items; {against} has "
                                           f"{expected[role]:,}"))
    source = f" from {against}" if expected is not None else " (no documented sizes to compare with)"
    report.lines.append(f"sizes{source}: " + ", ".join(parts))


def _labels(report: CheckReport, roles: dict[str, _Items], protocol: Protocol | None, names: list[str] | None,
            where: Path | str) -> None:
    widths = {role: items.labels.shape[1] for role, items in roles.items() if len(items.keys)}
    if len(set(widths.values())) > 1:
        report.problems.append(Problem("malformed line", str(where), f"the lists disagree on the number of labels: "
                                       f"{widths}"))
        return
    width = next(iter(widths.values()), 0)
    if protocol is not None and width != protocol.classes:
        report.problems.append(Problem("wrong class count", str(where), f"{width} label columns; the protocol has "
                                       f"{protocol.classes} classes"))
    per_image = {role: items.labels.sum(1) for role, items in roles.items()}
    stats = ", ".join(f"{role} {n.mean():.2f} ({n.min():.0f}-{n.max():.0f})" for role, n in per_image.items() if len(n))
    report.lines.append(f"labels: {width} classes; labels per image (mean, range): {stats}")
    report.lines.append("without a label: " + ", ".join(f"{role} {(n == 0).sum():,}" for role, n in per_image.items()))
    report.problems += _label_problems(roles, protocol)
    names = names if names and len(names) == width else [str(c) for c in range(width)]
    counts = {role: items.labels.sum(0).astype(np.int64) for role, items in roles.items()}
    pad = max((len(n) for n in names), default=0)
    report.lines.append(f"per class ({' / '.join(ROLES)}):")
    report.lines += [f"  {names[c]:<{pad}}  " + " / ".join(f"{counts[role][c]:,}" for role in ROLES)
                     for c in range(width)]


def _label_problems(roles: dict[str, _Items], protocol: Protocol | None) -> list[Problem]:
    """A role none of whose items has a label (one problem), else each item without one."""
    problems = []
    for role, items in roles.items():
        unlabelled = np.flatnonzero(items.labels.sum(1) == 0)
        count = len(items.keys)
        if count and len(unlabelled) == count:
            problems.append(
                Problem("no training labels", items.source, f"none of the {count:,} training items has a label: a "
                        "supervised method has nothing to learn from") if role == "train" else
                Problem("no labels", items.source, f"none of the {count:,} {role} items has a label: no query has a "
                        "relevant item, so the mAP means nothing"))
            continue
        note = " (the protocol keeps labelled images only)" if protocol is not None else ""
        problems += [Problem("unlabelled image", items.where[i], f"no label{note}") for i in unlabelled]
    return problems


def _item_problems(roles: dict[str, _Items]) -> list[Problem]:
    """An image listed twice in one role; a query that is also a database item."""
    problems = []
    for role, items in roles.items():
        first: dict[Any, str] = {}
        for key, where in zip(items.keys, items.where, strict=True):
            if key in first:
                problems.append(Problem("duplicate line", where, f"{key} is listed twice in {role} (first at "
                                        f"{first[key]})"))
            else:
                first[key] = where
    database = dict(zip(roles["database"].keys, roles["database"].where, strict=True))
    problems += [Problem("query/database overlap", where, f"query {key} is also in the database ({database[key]})")
                 for key, where in zip(roles["query"].keys, roles["query"].where, strict=True) if key in database]
    return problems


def _overlap(report: CheckReport, roles: dict[str, _Items], protocol: Protocol | None) -> None:
    problems = _item_problems(roles)
    report.problems += problems
    shared = sum(p.kind == "query/database overlap" for p in problems)
    database = set(roles["database"].keys)
    inside = sum(key in database for key in roles["train"].keys)
    train = len(roles["train"].keys)
    report.lines.append(f"overlap: query and database share {shared:,} items (every protocol: none); "
                        f"{inside:,} of the {train:,} training items are in the database"
                        + (f" (protocol: {'all' if protocol.train_in_database else 'none'})" if protocol else ""))
    if protocol is not None and inside != (train if protocol.train_in_database else 0):
        report.problems.append(Problem("train/database conflict", report.dataset,
                                       f"{inside:,} of the {train:,} training items are in the database; the "
                                       f"protocol has {'all' if protocol.train_in_database else 'none'}"))
