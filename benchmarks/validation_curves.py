"""Where does each frozen-feature recipe sit on its validation curve? One run per method and
code length trains ``--stretch`` times the recipe's epochs (same step schedule) on the
training split minus ``--validation`` held-out items, recording their mAP (ties: expected)
every ``recipe epochs / --points`` epochs. Epoch E of such a run is exactly a run of E
epochs, so one run shows whether the recipe stops short of its best (under-trained) or
past it (over-fitted), without ever looking at the test queries.

Prints a Markdown table (and writes it to ``--out`` for the report's appendix notes), under a
line that says which runs it shows: mean validation mAP over the code lengths at each point,
the recipe's point marked, and whether the recipe is within ``--tolerance`` points of the
curve's best. Each row names its tag and learning rate, as one method may have several curves
(a finer one, another lr) in the appendix.

    python benchmarks/validation_curves.py --results results/cifar10-frozen --datasets cifar10 \\
        --data-root ../shared/data --methods csq,orthohash,mlh --stretch 2 --set image_size=128
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from grid_options import add_grid_options

from hashbench.config import parse_assignments, resolve_config
from hashbench.data.datasets import get_dataset
from hashbench.registry import METHODS
from hashbench.results import iter_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_grid_options(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validation", type=int, default=1000, help="held-out training items (default 1000)")
    parser.add_argument("--stretch", type=int, default=2, help="train this many times the recipe's epochs")
    parser.add_argument("--points", type=int, default=6, help="curve points per recipe length")
    parser.add_argument("--epochs", type=int, default=None, help="train this many epochs instead of --stretch x")
    parser.add_argument("--every", type=int, default=None, help="a curve point every this many epochs instead")
    parser.add_argument("--tag", default="validation-curve")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    length = f"{args.epochs} epochs" if args.epochs else f"{args.stretch}x the recipe's epochs"
    spacing = f"a point every {args.every} epochs" if args.every else f"{args.points} points per recipe length"
    settings = f"; --set {' '.join(args.assignments)}" if args.assignments else ""
    lines = [f"Validation curves of {args.methods.replace(',', ', ')} ({args.datasets}; {args.bits} bits, seed "
             f"{args.seed}, {args.validation} held-out training items; {length}, {spacing}; tag {args.tag}{settings}):",
             "", f"| method | dataset | tag | lr | recipe epochs | validation mAP by epoch (mean over {args.bits} "
             f"bits; **recipe**) | best epoch | recipe within {args.tolerance} points of best |",
             "|---|---|---|---|---|---|---|---|"]
    passed = True
    lengths = {int(b) for b in args.bits.split(",")}
    for method in args.methods.split(","):
        for dataset in args.datasets.split(","):
            recipe = resolve_config(method=method, method_cls=METHODS.get(method), dataset=dataset,
                                    dataset_defaults=get_dataset(dataset)[0].defaults, bits=32, seed=args.seed,
                                    overrides={**parse_assignments(args.assignments), "frozen_backbone": True})
            epochs = recipe.epochs
            every = args.every or max(epochs // args.points, 1)
            command = [sys.executable, "-m", "hashbench.cli", "run", "--methods", method, "--datasets", dataset,
                       "--bits", args.bits, "--seeds", str(args.seed), "--frozen-backbone", "--no-progress",
                       "--results", str(args.results), "--epochs", str(args.epochs or args.stretch * epochs),
                       "--set", f"validation={args.validation}", "--set", f"eval_every={every}",
                       "--set", f"tag={args.tag}",
                       *[f"--set={a}" for a in args.assignments]]
            if args.data_root:
                command += ["--data-root", args.data_root]
            print("$ " + " ".join(command[2:]), flush=True)
            subprocess.run(command, check=True)
            runs = [record for _, record in iter_records(args.results)
                    if record["method"] == method and record["dataset"] == dataset and record.get("tag") == args.tag
                    and record["status"] == "done" and record["seed"] == args.seed and record["bits"] in lengths]
            curves = [[(e["epoch"], e["val_map"]) for e in record["history"] if e.get("val_map") is not None]
                      for record in runs]
            lr = ", ".join(f"{value:g}" for value in sorted({record["config"]["lr"] for record in runs}))
            points = [dict(curve) for curve in curves]
            common = sorted(set.intersection(*(set(p) for p in points)))  # the epochs every length reached
            mean = {epoch: 100 * sum(p[epoch] for p in points) / len(points) for epoch in common}
            best = max(mean, key=mean.get)
            on_curve = epochs in mean
            ok = on_curve and mean[best] - mean[epochs] < args.tolerance
            passed &= ok or not on_curve  # a finer curve that stops short of the recipe only shows its start
            cells = " · ".join(f"**{e}: {v:.1f}**" if e == epochs else f"{e}: {v:.1f}" for e, v in mean.items())
            verdict = "(recipe off this curve)"
            if on_curve:
                verdict = "yes" if ok else f"NO ({mean[epochs] - mean[best]:+.1f})"
            lines.append(f"| {method} | {dataset} | {args.tag} | {lr} | {epochs} | {cells} | {best} | {verdict} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
