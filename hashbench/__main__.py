"""``python -m hashbench`` (and ``torchrun -m hashbench``) is the ``hashbench`` command."""

from hashbench.cli import main

main()
