"""The documentation site builds with warnings as errors (a broken link or anchor, a
stale API name or docstring parameter fails here), its config reference lists every key
of the config tree, and its API page documents every public name."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rsexp
from rsexp.config import Config, flatten, to_dict
from rsexp.config.reference import markdown

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if MKDOCS is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[dev]')")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [MKDOCS, "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def _text(html: str) -> str:
    """The page's text with tags dropped (a key's code span may be split by highlighting)."""
    return re.sub(r"<[^>]+>", "", html).replace("&lt;", "<").replace("&gt;", ">")


def test_the_config_reference_lists_every_key(site):
    page = _text((site / "reference" / "config" / "index.html").read_text())
    missing = []
    for key in flatten(to_dict(Config())):
        if key.startswith("sweep.space."):
            # a mapping: each default entry has its row, each entry's fields theirs
            name, field = key.removeprefix("sweep.space.").rsplit(".", 1)
            wanted = [f"sweep.space.{name}", f"sweep.space.<name>.{field}"]
        else:
            wanted = [key]
        missing += [w for w in wanted if w not in page]
    assert not missing, missing


def test_the_config_reference_carries_each_keys_comment_and_default():
    md = markdown()
    row = next(line for line in md.splitlines() if line.startswith("| `data.synthetic.num_val`"))
    assert "`int`" in row and "`480`" in row and "held out for val/\\*" in row
    row = next(line for line in md.splitlines() if line.startswith("| `loss.lambda_s`"))
    assert "`float`" in row and "`1.0`" in row and "The paper gives no weights" in row


def test_the_api_page_documents_every_public_name(site):
    html = (site / "reference" / "api" / "index.html").read_text()
    for name in rsexp.__all__:
        if name == "__version__":
            assert "rsexp.__version__" in _text(html)
            continue
        module = rsexp._PUBLIC[name]
        # mkdocstrings gives each documented object an anchor of its full path
        assert f'id="{module}.{name}"' in html, name


def test_the_performance_page_is_generated_from_the_benchmark_results(site):
    import json

    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    page = _text((site / "performance" / "index.html").read_text())
    for section, cases in results.items():
        if not section.startswith("_"):
            assert all(case in page for case in cases), section
    assert results["_machine"] in page


def test_the_readme_links_into_pages_that_exist():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)#]+)(?:#([^)]+))?\)", readme)
    assert len(links) >= 10
    for path, anchor in links:
        target = ROOT / path
        assert target.is_file(), path
        if anchor:
            # the slug of a heading, as MkDocs' toc extension and GitHub make it
            slugs = {
                re.sub(r"[^\w\s-]", "", h.lower()).strip().replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", target.read_text(), re.M)
            }
            assert anchor in slugs, f"{path}#{anchor}"


def test_a_plugins_config_section_is_listed_with_its_keys(tmp_path, monkeypatch):
    from rsexp.config import sections

    (tmp_path / "toy_section.py").write_text(
        "from dataclasses import dataclass\n\n\n"
        "@dataclass(frozen=True)\nclass ToyConfig:\n"
        "    # how many classes to generate\n    classes: int = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from toy_section import ToyConfig

    monkeypatch.setitem(sections.SECTIONS, "data.toy", ToyConfig)
    row = next(line for line in markdown().splitlines() if "`data.toy.classes`" in line)
    assert "`int`" in row and "`3`" in row and "how many classes to generate" in row
