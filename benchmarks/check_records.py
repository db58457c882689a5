"""Does a results folder hold the runs of an experiment file, made with exactly its configs?

Resolves every run of the file's grids (``hashbench config show --json``, so nothing runs)
and compares each with the record in its folder: ``match`` (finished, same fingerprint),
``differs`` (finished under another config: the differing keys are listed), ``failed``,
``missing``, ``damaged`` (a record that cannot be read). With ``--metrics``, every matching
run's metrics are also recomputed from its saved codes (checked against the record's digest)
with the current evaluation code and must equal the record's exactly (``metrics differ``
otherwise, ``damaged`` for codes that cannot be read). Prints one line per run that does not match and the counts;
exits 1 if any run does not match.

    python benchmarks/check_records.py --config experiments/cifar10-frozen.toml \\
        --results results/cifar10-frozen [--grid main] [--metrics]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from hashbench.config import RUNTIME_KEYS, config_fingerprint, flat_config
from hashbench.eval import record_metrics
from hashbench.results import load_codes, read_record
from hashbench.validation import HashbenchError


def differing(wanted: dict, stored: dict) -> list[str]:
    """The keys (``hparams.<name>`` for a hyperparameter) whose values differ, runtime keys left out."""
    flat = [flat_config(config) for config in (wanted, stored)]
    return [f"{k}: {flat[1].get(k)!r} -> {flat[0].get(k)!r}" for k in sorted(set(flat[0]) | set(flat[1]))
            if k not in RUNTIME_KEYS and flat[0].get(k) != flat[1].get(k)]


def metrics_differ(folder: Path, record: dict) -> list[str]:
    """The record's metrics that its saved codes, evaluated again, do not reproduce exactly."""
    codes = load_codes(folder)
    stored = record["metrics"]
    again, _ = record_metrics(codes["query_codes"], codes["database_codes"], codes["query_labels"],
                              codes["database_labels"], stored["topk"])
    return [f"{k}: {stored.get(k)!r} -> {v!r}" for k, v in again.items() if stored.get(k) != v]


def check_run(run: dict, *, metrics: bool) -> tuple[str, str]:
    """The status of one run of ``config show --json`` against its record, and the detail to print."""
    folder = Path(run["folder"])
    try:
        record = read_record(folder)
        if record is None:
            return "missing", ""
        if record.get("status") != "done":
            return "failed", record.get("reason", "")
        if record.get("fingerprint", config_fingerprint(record["config"])) != run["fingerprint"]:
            return "differs", "; ".join(differing(run["config"], record["config"]) or ["an older schema"])
        if metrics and (wrong := metrics_differ(folder, record)):
            return "metrics differ", "; ".join(wrong)
    except HashbenchError as err:  # a damaged record or codes file: named, and the check goes on
        return "damaged", str(err)
    return "match", ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--results", required=True, type=Path)
    parser.add_argument("--grid", default=None)
    parser.add_argument("--metrics", action="store_true", help="recompute every matching run's metrics from its codes")
    args = parser.parse_args()
    show = [sys.executable, "-m", "hashbench.cli", "config", "show", "--config", args.config, "--results",
            str(args.results), "--json", *(["--grid", args.grid] if args.grid else [])]
    runs = json.loads(subprocess.run(show, check=True, capture_output=True, text=True).stdout)
    counts: Counter[str] = Counter()
    for run in runs:
        status, detail = check_run(run, metrics=args.metrics)
        counts[status] += 1
        if status != "match":
            print(f"{status}: {run['folder']} (grid {run['grid']}) {detail}".rstrip())
    statuses = ("match", "differs", "metrics differ", "failed", "missing", "damaged")
    print(f"{len(runs)} runs: " + ", ".join(f"{counts[s]} {s}" for s in statuses))
    sys.exit(0 if counts["match"] == len(runs) else 1)


if __name__ == "__main__":
    main()
