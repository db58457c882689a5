"""Bad input and damaged files, tried through the command line as a careless or adversarial user would.

Issue 26's probes, rerun end to end: each one prepares its case in a scratch folder (digits
and a 60-image list-file set), runs ``hashbench`` in a subprocess and checks the outcome a
user should get. Across all of them it also counts the three things that must never happen:

* a traceback (``Traceback (most recent call last)`` in the output),
* a silently wrong result (a record ``done`` where the case must fail, or a finished command
  with a wrong or stale result),
* a write outside the results, report and export folders (every other file of the scratch
  folder, a README beside it included, is compared before and after).

Prints one line per probe and the counts; exits 1 if any probe fails. About 3 minutes on 2 cores.

    python benchmarks/fault_probes.py [--keep DIR] [-k SUBSTRING]

The unit tests (tests/test_integrity.py, tests/test_reliability.py) test the same cases one
by one, several in ways a command line cannot reach (a full disk, a NaN at one training step).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

RUN = ["--bits", "16", "--seeds", "0", "--no-progress", "--epochs", "1"]
# The folders commands may write: results (r-* too), reports, exports, the feature cache and TORCH_HOME
WRITABLE = ("results", "trained", "reports", "exports", "cache", "torch")
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


@dataclass
class Outcome:
    """What a probe's commands did: exit codes and output, in order."""

    codes: list[int]
    outputs: list[str]

    @property
    def last(self) -> str:
        return self.outputs[-1]


class Scratch:
    """The probes' scratch folder: datasets, results, a README that must stay as it is."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.copies = self.datasets = 0
        self.env = {**os.environ, **THREADS, "HASHBENCH_CACHE": str(root / "cache"),
                    "TORCH_HOME": str(root / "torch")}

    def hashbench(self, *args: object, cwd: Path | None = None) -> tuple[int, str]:
        done = subprocess.run([sys.executable, "-m", "hashbench", *map(str, args)], cwd=cwd or self.root,
                              env=self.env, capture_output=True, text=True)
        return done.returncode, done.stdout + done.stderr

    def list_dataset(self, edit: Callable[[dict[str, list[str]]], None] | None = None, name: str = "",
                     copies: tuple[str, ...] = (), encoding: str = "utf-8") -> Path:
        """60 16x16 JPEGs of three classes (30 train, 10 test, 20 database), plus ``copies`` of
        the first under other names; ``edit`` changes the lines, written in ``encoding``.
        Folders are numbered: a name that an error must hold would make any error pass."""
        self.datasets += 1
        root = self.root / "data" / (name or f"set{self.datasets}")
        (root / "img").mkdir(parents=True)
        rng = np.random.default_rng(0)
        lines: dict[str, list[str]] = {"train": [], "test": [], "database": []}
        for i in range(60):
            role = "train" if i < 30 else ("test" if i < 40 else "database")
            pixels = np.full((16, 16, 3), 60 + 80 * (i % 3), dtype=np.uint8) + rng.integers(0, 20, (16, 16, 3),
                                                                                        dtype=np.uint8)
            Image.fromarray(pixels.astype(np.uint8)).save(root / "img" / f"{i}.jpg")
            lines[role].append(f"img/{i}.jpg " + " ".join("1" if c == i % 3 else "0" for c in range(3)))
        for copy in copies:
            shutil.copy(root / "img" / "0.jpg", root / "img" / copy)
        if edit:
            edit(lines)
        for role, rows in lines.items():
            (root / f"{role}.txt").write_bytes(("\n".join(rows) + "\n").encode(encoding))
        return root

    def finished(self) -> Path:
        """DPSH's folder in a fresh copy of a results folder holding finished DPSH and CSQ runs on
        digits (trained once): a copy a probe may damage."""
        source = self.root / "trained"
        if not source.exists():
            code, output = self.hashbench("run", "--methods", "dpsh,csq", *RUN, "--results", source)
            assert code == 0, output
        self.copies += 1
        target = self.root / "results" / f"copy{self.copies}"
        shutil.copytree(source, target)
        return target / "digits" / "dpsh" / "16" / "seed0"

    def snapshot(self) -> dict[str, str]:
        """Every file outside the writable folders, with its sha256."""
        files = {}
        for path in self.root.rglob("*"):
            relative = path.relative_to(self.root)
            if path.is_file() and relative.parts[0] not in WRITABLE and not relative.parts[0].startswith("r-"):
                files[str(relative)] = hashlib.sha256(path.read_bytes()).hexdigest()
        return files


@dataclass
class Probe:
    """One case: ``prepare`` returns the commands to run; ``check`` says what is wrong with the outcome."""

    item: str
    name: str
    prepare: Callable[[Scratch], list[list[object]]]
    check: Callable[[Scratch, Outcome], str | None]
    wrong_if_failed: bool = False  # a failed check means a silently wrong result, not just a poor error
    cwd: str = ""  # the commands' working directory, under the scratch folder


def record(folder: Path) -> dict:
    return json.loads((folder / "result.json").read_text())


def one_line_error(outcome: Outcome, *needles: str) -> str | None:
    """None when the last command failed with one error line that names every needle."""
    if outcome.codes[-1] == 0:
        return "exit 0"
    errors = [line for line in outcome.last.splitlines() if line.startswith(("Error", "error"))]
    if len(errors) != 1:
        return f"{len(errors)} error lines"
    missing = [needle for needle in needles if needle not in errors[0]]
    return f"the error does not name {missing}: {errors[0]}" if missing else None


def failed_run(folder_of: Callable[[Scratch], Path], *reasons: str) -> Callable[[Scratch, Outcome], str | None]:
    """The run exits 1 and its record says failed, with a reason starting with one of ``reasons``."""
    def check(scratch: Scratch, outcome: Outcome) -> str | None:
        stored = record(folder_of(scratch))
        if stored["status"] != "failed":
            return f"recorded {stored['status']} (map {stored.get('metrics', {}).get('map_expected@1597')})"
        if outcome.codes[-1] != 1 or not stored["reason"].startswith(reasons):
            return f"exit {outcome.codes[-1]}, reason {stored['reason']!r}"
        return None
    return check


def flipped(part: bytes) -> bytes:
    return bytes(b ^ 0xFF for b in part)


def damage(path: Path, how: str) -> None:
    """Spoil a file as a torn write, a wiped file or flipped bytes would (deterministically)."""
    data = path.read_bytes()
    middle = len(data) // 2
    path.write_bytes({"truncated": data[:middle], "empty": b"",
                      "garbage": b"\x00\xff garbage" if path.suffix == ".json" else flipped(data[:64]) + data[64:],
                      "64 bytes in the middle": data[:middle] + flipped(data[middle:middle + 64]) + data[middle + 64:],
                      }[how])


def run_folder(scratch: Scratch, method: str, results: str) -> Path:
    return next((scratch.root / results).glob(f"*/{method}/16/seed0"))


def digits_run(method: str, results: str, *extra: object) -> list[object]:
    return ["run", "--methods", method, *RUN, "--results", results, *extra]


def list_run(data: Path, results: str, *extra: object) -> list[object]:
    return ["run", "--methods", "csq", "--datasets", f"listfile:{data}", "--backbone", "small_cnn", *RUN,
            "--batch-size", "8", "--set", "num_workers=0", "--results", results, *extra]


# --- the probes ---------------------------------------------------------------------------------

def diverged(method: str) -> Probe:
    return Probe("1", f"{method} at lr=1e30 is not recorded done",
                 lambda s: [digits_run(method, f"r-{method}", "--set", "batch_size=4096", "--set", "lr=1e30")],
                 failed_run(lambda s: run_folder(s, method, f"r-{method}"), "non-finite", "degenerate codes"),
                 wrong_if_failed=True)


def damaged_model(command: str) -> Probe:
    def prepare(s: Scratch) -> list[list[object]]:
        folder = s.finished()
        damage(folder / "model.pt", "64 bytes in the middle")
        return [["search", folder, "--item", "0"] if command == "search"
                else ["export", folder, "--out", s.root / "exports" / "m.ts"]]

    def check(s: Scratch, outcome: Outcome) -> str | None:
        if (s.root / "exports" / "m.ts").exists():
            return "exported a damaged model"
        return one_line_error(outcome, "model.pt", "damaged")
    return Probe("2", f"64 garbage bytes in model.pt: {command}", prepare, check, wrong_if_failed=True)


def damaged_checkpoint() -> Probe:
    def prepare(s: Scratch) -> list[list[object]]:
        args = digits_run("csq", "r-ckpt")
        code, output = s.hashbench(*args, "--set", "keep_checkpoint=true")
        assert code == 0, output
        folder = run_folder(s, "csq", "r-ckpt")
        (folder / "result.json").unlink()  # as if killed after its last epoch
        damage(folder / "checkpoint.pt", "64 bytes in the middle")
        return [args]
    return Probe("2", "garbage in a checkpoint is not resumed", prepare,
                 failed_run(lambda s: run_folder(s, "csq", "r-ckpt"), "checkpoint"), wrong_if_failed=True)


def damaged_record(how: str, command: str) -> Probe:
    state: dict = {}  # what prepare made, for check

    def prepare(s: Scratch) -> list[list[object]]:
        folder = s.finished()
        damage(folder / "result.json", how)
        state.update(folder=folder, before=(folder / "result.json").read_bytes())
        return [{"search": ["search", folder, "--item", "0"],
                 "export": ["export", folder, "--out", s.root / "exports" / "m.ts"],
                 "report": ["report", "--results", folder.parents[3], "--out", s.root / "reports" / how,
                            "--tsne-methods", "none"],
                 "rerun": digits_run("dpsh", folder.parents[3])}[command]]

    def check(s: Scratch, outcome: Outcome) -> str | None:
        name = str(state["folder"] / "result.json")
        if (state["folder"] / "result.json").read_bytes() != state["before"]:
            return "the damaged record was overwritten"
        if command == "report":
            return None if outcome.codes[-1] == 0 and f"warning: {name} is damaged" in outcome.last else \
                f"exit {outcome.codes[-1]}, no warning naming the record"
        if command == "rerun":
            return None if outcome.codes[-1] == 1 and f"FAILED: {name} is damaged" in outcome.last else \
                f"exit {outcome.codes[-1]}, no line naming the record"
        return one_line_error(outcome, name, "damaged")
    return Probe("3", f"{how} result.json: {command}", prepare, check)


def damaged_codes(how: str, command: str) -> Probe:
    state: dict = {}  # what prepare made, for check

    def prepare(s: Scratch) -> list[list[object]]:
        folder = s.finished()
        damage(folder / "codes.npz", how)
        state["folder"] = folder
        return [{"search": ["search", folder, "--item", "0"], "index": ["index", folder],
                 "report": ["report", "--results", folder.parents[3], "--out", s.root / "reports" / f"codes-{how}",
                            "--tsne-methods", "none"]}[command]]

    def check(s: Scratch, outcome: Outcome) -> str | None:
        name = str(state["folder"] / "codes.npz")
        if command == "report":
            return None if outcome.codes[-1] == 0 and f"warning: {name}" in outcome.last else \
                f"exit {outcome.codes[-1]}, no warning naming the codes"
        return one_line_error(outcome, name)
    return Probe("3", f"{how} codes.npz: {command}", prepare, check, wrong_if_failed=how == "garbage")


def bad_lists(item: str, name: str, edit: Callable[[dict[str, list[str]]], None], *needles: str,
              warning: bool = False) -> Probe:
    """A list-file set ``edit`` spoils: run refuses in one line (or warns, then finishes) and data check flags it."""
    state: dict = {}  # what prepare made, for check

    def prepare(s: Scratch) -> list[list[object]]:
        data = s.list_dataset(edit)
        state["results"] = f"r-{data.name}"
        return [["data", "check", f"listfile:{data}"], list_run(data, state["results"])]

    def check(s: Scratch, outcome: Outcome) -> str | None:
        if outcome.codes[0] == 0:
            return "data check found no problem"
        if warning:
            warnings = [line for line in outcome.last.splitlines() if line.startswith("warning: ")]
            found = [n for n in needles if any(n in line for line in warnings)]
            return None if outcome.codes[-1] == 0 and found == list(needles) else \
                f"exit {outcome.codes[-1]}, warnings name {found} of {list(needles)}"
        if list((s.root / state["results"]).glob("**/result.json")):
            return "a record was written"
        return one_line_error(outcome, *needles)
    return Probe(item, f"{name}: data check and run", prepare, check, wrong_if_failed=not warning)


def all_zero(lines: dict[str, list[str]]) -> None:
    for role in lines:
        lines[role] = [line.rsplit(" ", 3)[0] + " 0 0 0" for line in lines[role]]


def duplicated(lines: dict[str, list[str]]) -> None:
    lines["database"].append(lines["database"][0])


def overlapping(lines: dict[str, list[str]]) -> None:
    lines["database"].append(lines["test"][0])


def leaves_root(lines: dict[str, list[str]]) -> None:
    lines["train"][0] = "../" + lines["train"][0]


def absolute(lines: dict[str, list[str]]) -> None:
    lines["train"][0] = "/etc/passwd 1 0 0"


def unquoted_space(lines: dict[str, list[str]]) -> None:
    lines["train"][0] = "img/my photo.jpg 1 0 0"


def stale_lists() -> Probe:
    def prepare(s: Scratch) -> list[list[object]]:
        data = s.list_dataset()
        code, output = s.hashbench(*list_run(data, "r-edited"))
        assert code == 0, output
        queries = (data / "test.txt").read_text()
        (data / "test.txt").write_text(queries.replace("img/30.jpg 1 0 0", "img/30.jpg 0 1 0", 1))
        return [list_run(data, "r-edited")]
    return Probe("4", "lists edited after a finished run: the stale record is not reused", prepare,
                 lambda s, o: one_line_error(o, "made on other data"), wrong_if_failed=True)


def accented_name(lines: dict[str, list[str]]) -> None:
    lines["train"][2] = "img/café.jpg 1 0 0"


def quoted_space(lines: dict[str, list[str]]) -> None:
    lines["train"][0] = '"img/my photo.jpg" 1 0 0'


def latin1() -> Probe:
    return Probe("6", "Latin-1 list file: run",
                 lambda s: [list_run(s.list_dataset(accented_name, copies=("café.jpg",), encoding="latin-1"),
                                     "r-latin1")],
                 lambda s, o: one_line_error(o, "train.txt:3", "UTF-8"))


def quoted() -> Probe:
    def check(s: Scratch, outcome: Outcome) -> str | None:
        return None if outcome.codes[-1] == 0 else f"exit {outcome.codes[-1]}: {outcome.last[-300:]}"
    return Probe("6", "a quoted image name with a space: run finishes",
                 lambda s: [list_run(s.list_dataset(quoted_space, copies=("my photo.jpg",)), "r-quoted")], check)


def report_paths(key: str) -> Probe:
    """An experiment file whose [report] ``key`` points outside the working directory."""
    def prepare(s: Scratch) -> list[list[object]]:
        (s.root / "outside").mkdir(exist_ok=True)
        (s.root / "outside" / "README.md").write_text("a README that is not the report's\n")
        work = s.root / "work"
        work.mkdir(exist_ok=True)
        value = "../outside" if key == "out" else "../outside/README.md"
        (work / f"exp-{key}.toml").write_text(f'methods = ["dpsh"]\nbits = [16]\nresults = "../results"\n\n'
                                              f'[report]\n{key} = "{value}"\n')
        return [["report", "--config", work / f"exp-{key}.toml"]]

    def check(s: Scratch, outcome: Outcome) -> str | None:
        return one_line_error(outcome, f"exp-{key}.toml")
    return Probe("5", f"[report] {key} outside the working directory is refused", prepare, check, cwd="work")


def existing_out(command: str) -> Probe:
    state: dict = {}  # what prepare made, for check

    def prepare(s: Scratch) -> list[list[object]]:
        folder = s.finished()
        target = s.root / "exports" / f"existing-{command}.bin"
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(b"someone's file")
        state["target"] = target
        return [[command, folder, "--out", target]]

    def check(s: Scratch, outcome: Outcome) -> str | None:
        if state["target"].read_bytes() != b"someone's file":
            return "overwrote the file"
        return one_line_error(outcome, str(state["target"]), "--force")
    return Probe("5", f"{command} --out an existing file needs --force", prepare, check)


def escaped_names() -> Probe:
    def prepare(s: Scratch) -> list[list[object]]:
        data = s.list_dataset(name="evil<script>x|y")
        return [list_run(data, "r-evil"), ["report", "--results", "r-evil", "--out", s.root / "reports" / "evil",
                                           "--tsne-methods", "none", "--no-figures"]]

    def check(s: Scratch, outcome: Outcome) -> str | None:
        if outcome.codes != [0, 0]:
            return f"exits {outcome.codes}: {outcome.last[-300:]}"
        page = (s.root / "reports" / "evil" / "README.md").read_text()
        if "<script>" in page:
            return "raw <script> on the report page"
        widths = {row.count("|") - row.count("\\|") for row in page.splitlines() if row.startswith("| ")}
        return None if len(widths) <= 2 else f"table rows of {sorted(widths)} columns"
    return Probe("5", "a dataset path with <script> and | is escaped in the report", prepare, check)


def orphan_temporaries() -> Probe:
    def prepare(s: Scratch) -> list[list[object]]:
        folder = s.root / "r-orphan" / "digits" / "csq" / "16" / "seed0"
        folder.mkdir(parents=True)
        (folder / ".checkpoint.pt.k1ll3d.tmp").write_bytes(b"half a write")
        return [digits_run("csq", "r-orphan")]

    def check(s: Scratch, outcome: Outcome) -> str | None:
        left = list((s.root / "r-orphan").glob("**/*.tmp"))
        return None if outcome.codes[-1] == 0 and not left else f"exit {outcome.codes[-1]}, left {left}"
    return Probe("6", "orphan .tmp files of killed writes are removed", prepare, check)


def validation_size() -> Probe:
    def check(s: Scratch, outcome: Outcome) -> str | None:
        if list((s.root / "r-val").glob("**/result.json")):
            return "a record was written"
        return one_line_error(outcome, "validation", "99999")
    return Probe("6", "validation=99999 fails before any run",
                 lambda s: [digits_run("csq", "r-val", "--set", "validation=99999")], check)


def permissions_and_setup_line() -> Probe:
    def check(s: Scratch, outcome: Outcome) -> str | None:
        folder = run_folder(s, "csq", "r-mode")
        modes = {path.name: oct(path.stat().st_mode & 0o777) for path in folder.iterdir() if path.is_file()}
        if set(modes.values()) != {"0o644"}:
            return f"modes {modes}"
        weights = record(folder)["backbone"]["weights"]
        return None if f"({weights})" in outcome.last.splitlines()[0] else \
            f"setup line {outcome.last.splitlines()[0]!r}, record weights {weights!r}"
    return Probe("6", "files get the umask's permissions; the setup line says the record's weights",
                 lambda s: [digits_run("csq", "r-mode")], check)


def probes() -> list[Probe]:
    records = [damaged_record(how, command) for how in ("truncated", "empty", "garbage")
               for command in ("report", "search", "export", "rerun")]
    codes = [damaged_codes(how, command) for how in ("empty", "garbage") for command in ("report", "search", "index")]
    return [
        diverged("mlh"), diverged("csq"),
        damaged_model("search"), damaged_model("export"), damaged_checkpoint(),
        *records, *codes,
        bad_lists("4", "all-zero labels", all_zero, "train.txt", "has a label"),
        bad_lists("4", "duplicate rows", duplicated, "database.txt:21", "listed twice", warning=True),
        bad_lists("4", "query database overlap", overlapping, "test.txt:1", "also in the database", warning=True),
        stale_lists(),
        bad_lists("5", "outside root", leaves_root, "train.txt:1", "allow_outside_root"),
        bad_lists("5", "absolute path", absolute, "train.txt:1", "allow_outside_root"),
        report_paths("out"), report_paths("notes"),
        existing_out("export"), existing_out("index"),
        escaped_names(),
        latin1(), quoted(),
        bad_lists("6", "unquoted space", unquoted_space, "train.txt:1", "quote"),
        orphan_temporaries(), validation_size(), permissions_and_setup_line(),
    ]


def run_probe(scratch: Scratch, probe: Probe) -> tuple[str | None, bool]:
    """The probe's problem (None if none) and whether any output held a traceback."""
    try:
        commands = probe.prepare(scratch)
    except Exception as err:  # a command the case needs first failed
        return f"the case could not be prepared ({type(err).__name__}: {str(err)[-200:]!r})", "Traceback" in str(err)
    before = scratch.snapshot()
    outcome = Outcome([], [])
    for args in commands:
        code, output = scratch.hashbench(*args, cwd=scratch.root / probe.cwd)
        outcome.codes.append(code)
        outcome.outputs.append(output)
    traceback = any("Traceback (most recent call last)" in output for output in outcome.outputs)
    try:
        problem = probe.check(scratch, outcome)
    except Exception as err:  # no record, no file where the case should have left one
        problem = f"the outcome could not be checked ({type(err).__name__}: {err}); output: {outcome.last[-200:]!r}"
    written = sorted(path for path, digest in scratch.snapshot().items() if before.get(path) != digest)
    if written:
        problem = f"wrote outside the results/report folders: {written}"
    return problem, traceback


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="Keep the scratch folder here (default: a temporary one).")
    parser.add_argument("-k", dest="only", default="", help="Only the probes whose name holds this text.")
    options = parser.parse_args()
    os.umask(0o022)  # the permissions probe expects a plain open's 0644
    root = options.keep or Path(tempfile.mkdtemp(prefix="hashbench-probes-"))
    root.mkdir(parents=True, exist_ok=True)
    scratch = Scratch(root.resolve())
    counts = {"passed": 0, "failed": 0, "traceback": 0, "silently wrong": 0, "wrote outside": 0}
    selected = [probe for probe in probes() if options.only in probe.name]
    for probe in selected:
        problem, traceback = run_probe(scratch, probe)
        counts["traceback"] += traceback
        counts["passed" if problem is None and not traceback else "failed"] += 1
        counts["silently wrong"] += bool(problem) and probe.wrong_if_failed
        counts["wrote outside"] += bool(problem) and problem.startswith("wrote outside")
        status = "ok  " if problem is None and not traceback else "FAIL"
        print(f"{status} [{probe.item}] {probe.name}" + (f": {problem}" if problem else "")
              + (" (traceback)" if traceback else ""), flush=True)
    print(f"{len(selected)} probes: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    if not options.keep:
        shutil.rmtree(root)
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
