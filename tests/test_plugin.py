"""A third-party method registered by entry point is listed and runs, with no edit to hashbench."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import subprocess_env

from hashbench.method import create_method
from hashbench.registry import METHODS

PLUGIN = textwrap.dedent('''
    """A toy third-party method: a tanh hash layer trained with a pairwise likelihood."""
    from hashbench import HashLayer, HashMethod, real
    from hashbench.losses import pairwise_likelihood, pairwise_similarity


    class ToyHash(HashMethod):
        """toy third-party method for the plugin test"""

        scale = real(0.5, 0.0)
        train_defaults = {"epochs": 3}

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.hash_layer = HashLayer(self.feature_dim, self.bits)

        def forward(self, features):
            return self.hash_layer(features)

        def loss(self, output, *, labels, index, step):
            theta = self.scale * output @ output.T
            return {"loss": pairwise_likelihood(theta=theta, similarity=pairwise_similarity(labels, labels))}
''')


@pytest.mark.slow
def test_entry_point_plugin_is_listed_and_runs(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "toyhash_plugin.py").write_text(PLUGIN)
    dist = site / "toyhash_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toyhash-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[hashbench.methods]\ntoyhash = toyhash_plugin:ToyHash\n")
    env = subprocess_env(PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))

    # Both commands in one fresh interpreter (it discovers the entry point as any would);
    # a second interpreter would only add its start-up.
    commands = [["list", "methods"],
                ["run", "--methods", "toyhash", "--bits", "16", "--results", str(tmp_path / "results"),
                 "--set", "scale=0.25", "--epochs", "3", "--no-progress"]]
    script = f"from hashbench.cli import main\nfor args in {commands!r}:\n    main(args, standalone_mode=False)"
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "toyhash" in proc.stdout and "toy third-party method" in proc.stdout
    record = json.loads((tmp_path / "results/digits/toyhash/16/seed0/result.json").read_text())
    assert record["status"] == "done" and record["config"]["hparams"] == {"scale": 0.25}
    assert record["metrics"]["map_expected@1597"] > 0.3


def test_the_readme_method_example_runs():
    """The README's "Writing a method" example is valid code for the current API."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Writing a method"):]
    code = section[section.index("```python") + len("```python"):section.index("```", section.index("```python") + 3)]
    assert len(code.strip().splitlines()) < 20  # a new loss in under 20 lines
    namespace: dict = {}
    try:
        exec(compile(code, "README.md", "exec"), namespace)
        method = create_method("myhash", feature_dim=6, bits=16, num_classes=3, num_train=4, scale=0.25)
    finally:
        METHODS._entries.pop("myhash", None)
    labels = torch.eye(3)[[0, 1, 2, 0]]
    losses = method.loss(method(torch.randn(4, 6)), labels=labels, index=torch.arange(4), step=0)
    assert torch.isfinite(losses["loss"]) and namespace["MyHash"].defaults == {"scale": 0.5}
    assert method.scale == 0.25 and method.name == "myhash"
