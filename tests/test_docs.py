"""The documentation: docs/ builds with `mkdocs build --strict`, README's links land, CI runs README's test command.

The build runs here rather than as a separate step of .ci/run so that the README's one test
command checks the pages too, wherever it runs, and a broken page shows as a named test.
mkdocs.yml makes a link to a missing page or heading, and a page left out of nav, a warning,
and --strict turns warnings into a failed build.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # mkdocs-material's notice about MkDocs 2.0
    )
    assert build.returncode == 0, build.stdout + build.stderr
    return site


def test_docs_build_strictly(site):
    assert (site / "index.html").is_file()
    assert (site / "configuration" / "index.html").is_file()
    assert not (site / "_incoming").exists()  # other sessions' notes for the maintainer are not pages


def test_readme_links_into_docs_land_on_a_page_and_heading(site):
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)#]+\.md)(?:#([^)]+))?\)", readme)
    assert len(links) >= 10
    for page, anchor in links:
        assert (ROOT / page).is_file(), f"README links to {page}, which does not exist"
        built = site / ("" if page == "docs/index.md" else Path(page).relative_to("docs").with_suffix("")) / "index.html"
        if anchor:
            assert f'id="{anchor}"' in built.read_text(), f"README links to {page}#{anchor}, a heading that page does not have"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"```bash\n(python -m pip install -e '\.\[test\]' && python -m pytest[^\n]*)\n```", readme)
    assert command, "README's test command is missing"
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for part in command.group(1).split(" && "):
        assert part in ci, f"CI does not run README's `{part}`"
