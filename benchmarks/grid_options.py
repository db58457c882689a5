"""Command-line options shared by the benchmark scripts that run a grid of cached-feature runs."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_grid_options(parser: argparse.ArgumentParser) -> None:
    """--results, --datasets, --data-root, --methods, --bits, --set and --tolerance."""
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--datasets", default="cifar10")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--methods", default="dpsh,hashnet,csq,orthohash,mlh")
    parser.add_argument("--bits", default="16,32,64")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--tolerance", type=float, default=0.5, help="points of mAP (default 0.5)")
