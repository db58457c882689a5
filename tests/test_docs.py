"""The docs a reader uses: the generated pages are current, the README is short, every
relative link resolves, every method has a page and a paper, the headline table is the report's."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest

from hashbench.registry import METHODS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def load_generator():
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generate():
    return load_generator()


def markdown_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def builtin_methods() -> list[str]:
    return [name for name in METHODS.names() if METHODS.get(name).__module__.startswith("hashbench.methods.")]


def test_generated_docs_are_current(generate):
    assert generate.stale_files(ROOT) == [], "run: python docs/generate.py"


def test_check_names_each_stale_file_and_write_fixes_it(generate, tmp_path, capsys):
    shutil.copy(README, tmp_path / "README.md")
    assert generate.main(["--root", str(tmp_path)]) == 0
    assert generate.main(["--check", "--root", str(tmp_path)]) == 0
    page = tmp_path / "docs" / "methods" / "dpsh.md"
    page.write_text(page.read_text().replace("Li et al., IJCAI 2016", "someone else"))
    (tmp_path / "docs" / "methods" / "gone.md").write_text("a method that no longer exists\n")
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text().replace("[`csq`](docs/methods/csq.md)", "csq"))
    capsys.readouterr()

    assert generate.main(["--check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert all(name in err for name in ("docs/methods/dpsh.md", "docs/methods/gone.md", "README.md"))
    assert "docs/methods/csq.md:" not in err
    generate.main(["--root", str(tmp_path)])
    assert generate.stale_files(tmp_path) == [] and not (tmp_path / "docs" / "methods" / "gone.md").exists()


def test_generator_refuses_a_readme_without_markers(generate, tmp_path):
    (tmp_path / "README.md").write_text("# hashbench\n")
    with pytest.raises(SystemExit, match="methods:start"):
        generate.stale_files(tmp_path)


def test_readme_is_under_10_kb():
    assert README.stat().st_size < 10_240


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def links(text: str) -> list[str]:
    """Targets of the inline Markdown links of ``text``, code blocks and code spans left out."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    text = re.sub(r"`[^`\n]*`", "code", text)
    return re.findall(r"\]\(([^()\s]+)\)", text)


def test_every_relative_link_resolves():
    broken = []
    for source in markdown_files():
        for target in links(source.read_text()):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            file = (source.parent / path).resolve() if path else source
            if not file.exists():
                broken.append(f"{source.relative_to(ROOT)}: {target}")
            elif anchor and file.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", re.sub(r"^```.*?^```", "", file.read_text(), flags=re.M | re.S),
                                      flags=re.M)
                if anchor not in {slug(heading) for heading in headings}:
                    broken.append(f"{source.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, broken


def test_link_check_sees_links_and_skips_code():
    assert links("see [a](docs/a.md#x) and `[b](nope.md)`\n```\n[c](nope.md)\n```\n") == ["docs/a.md#x"]
    assert slug("Frozen features (the CPU way) and fine-tuning (the GPU way)") == \
        "frozen-features-the-cpu-way-and-fine-tuning-the-gpu-way"


def test_every_method_has_a_page_a_paper_and_fidelity_rows():
    for name in builtin_methods():
        cls = METHODS.get(name)
        assert (ROOT / "docs" / "methods" / f"{name}.md").is_file(), name
        assert cls.paper.strip(), f"{name}: no paper"
        assert cls.fidelity, f"{name}: no fidelity rows"
        assert all(len(row) == 3 and all(isinstance(text, str) and text.strip() for text in row)
                   for row in cls.fidelity), name


def test_headline_table_is_the_reports():
    """Each cell of the README's results table is the published report's cell for that method."""
    readme = README.read_text()
    section = readme[readme.index("## Results"):readme.index("## Methods")]
    report = (ROOT / "reports" / "cifar10-frozen" / "map.md").read_text()
    published = {}
    for line in report.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 7 and cells[0] in METHODS:
            published[cells[0]] = [re.sub(r"</?u>|\*\*|\(\d+\)", "", cell).strip() for cell in cells[1:4]]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| ") and "±" in line]
    assert len(rows) >= 5
    for method, *cells in rows:
        assert cells == published[method], method


def test_code_points_to_existing_docs():
    """Help texts and docstrings that send the reader to a page name one that exists, and none
    sends them to a README section (the README is short; the details are under docs/)."""
    missing, to_readme = [], []
    for source in sorted((ROOT / "hashbench").rglob("*.py")):
        text = source.read_text()
        missing += [f"{source.relative_to(ROOT)}: {page}" for page in re.findall(r"\bdocs/[\w/.-]+\.md", text)
                    if not (ROOT / page).is_file()]
        to_readme += [f"{source.relative_to(ROOT)}: {hit}" for hit in re.findall(r"see the README[^)\n]*", text)]
    assert not missing and not to_readme, missing + to_readme
