"""Has each method's frozen-feature recipe converged? Train it as published and with its
schedule stretched x2 (epochs and lr step doubled), same seeds, and compare mean mAP.

A recipe passes when doubling moves its mean mAP (ties: expected) by less than
``--tolerance`` points at every code length. The x1 runs are the published grid's own
records (same results folder, reused when present); the x2 runs are stored under the tag
``epochs-x2`` beside them, so the report shows them as a table of their own (on its appendix
page, ``appendix_tags``). Prints a Markdown table, under a line that says which runs it
compares, and writes it to ``--out`` for the report's appendix notes.

    python benchmarks/convergence.py --results results/cifar10-frozen --datasets cifar10 \\
        --data-root ../shared/data --methods dpsh,hashnet,csq,orthohash,mlh --bits 16,32,64 --seeds 0,1,2 \\
        --set image_size=128 --out benchmarks/convergence_cifar10.md
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd
from grid_options import add_grid_options

from hashbench.results import iter_records, records_frame

TAG = "epochs-x2"


def hashbench(*args: str) -> None:
    command = [sys.executable, "-m", "hashbench.cli", *args]
    print("$ hashbench " + " ".join(args), flush=True)
    subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_grid_options(parser)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    common = ["--datasets", args.datasets, "--bits", args.bits, "--seeds", args.seeds, "--frozen-backbone",
              "--results", str(args.results), "--no-progress"]
    common += [f"--set={a}" for a in args.assignments]
    if args.data_root:
        common += ["--data-root", args.data_root]
    rows = []
    for method in args.methods.split(","):
        hashbench("run", "--methods", method, *common)  # x1: the published recipe (skipped when done)
        config = next(record["config"] for _, record in iter_records(args.results)
                      if record["method"] == method and record.get("tag") is None and record["status"] == "done")
        epochs = int(config["epochs"])
        stretch = ["--epochs", str(2 * epochs), "--set", f"tag={TAG}"]
        if config["scheduler"] == "step":
            stretch += ["--set", f"lr_step={2 * int(config['lr_step'])}"]
        hashbench("run", "--methods", method, *common, *stretch)
        frame = records_frame(iter_records(args.results))
        frame = frame[frame["seed"].isin([int(seed) for seed in args.seeds.split(",")])]
        for dataset in args.datasets.split(","):
            for bits in map(int, args.bits.split(",")):
                runs = frame[(frame["method"] == method) & (frame["dataset"] == dataset) & (frame["bits"] == bits)
                             & (frame["status"] == "done")]
                once = runs[runs["tag"].isna()]["map_expected"]
                twice = runs[runs["tag"] == TAG]["map_expected"]
                delta = 100 * (twice.mean() - once.mean())
                rows.append({"method": method, "dataset": dataset, "bits": bits, "epochs": epochs,
                             "map": once.mean(), "map_x2": twice.mean(), "delta_points": delta,
                             "converged": abs(delta) < args.tolerance, "seeds": len(once)})
    table = pd.DataFrame(rows)
    lines = [f"The recipes of {args.methods.replace(',', ', ')} against their schedule stretched x2 (tag {TAG}), "
             f"seeds {args.seeds.replace(',', ', ')}:", "",
             f"| method | dataset | bits | seeds | epochs | mAP (x1) | mAP (x2 epochs) | change, points "
             f"| < {args.tolerance} |", "|---|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.method} | {r.dataset} | {r.bits} | {r.seeds} | {r.epochs} | {r.map:.4f} | {r.map_x2:.4f} "
                     f"| {r.delta_points:+.2f} | {'yes' if r.converged else 'NO'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    failing = table[~table["converged"]]
    if not failing.empty:
        print(f"not converged: {', '.join(sorted(set(failing['method'])))}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
