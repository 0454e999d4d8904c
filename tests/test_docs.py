"""The documentation: docs/ builds with `mkdocs build --strict`, README's links land, CI runs README's test command.

The build runs here rather than as a separate step of .ci/run so that the README's one test
command checks the pages too, wherever it runs, and a broken page shows as a named test.
mkdocs.yml makes a link to a missing page or heading, and a page left out of nav, a warning,
and --strict turns warnings into a failed build.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


def test_configuration_page_names_every_key_of_every_group():
    """docs/configuration.md promises every group and option: each key a choice's YAML sets is named there."""
    page = (ROOT / "docs" / "configuration.md").read_text()
    presets = {"experiment", "reference", "hparams_search", "hydra"}  # sweeps and Hydra's settings, not keys of a run

    def keys(node: dict, prefix: str):
        for key, value in node.items():
            if key == "defaults":
                continue
            if isinstance(value, dict) and value:
                yield from keys(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}"

    missing = set()
    for path in sorted((ROOT / "conf").glob("*/*.yaml")):
        group = path.parent.name
        if group in presets:
            continue
        for key in keys(yaml.safe_load(path.read_text()) or {}, f"{group}."):
            if not key.endswith(".name") and f"`{key}" not in page:  # each choice sets its own name
                missing.add(f"{key} (conf/{group}/{path.name})")
    for key in keys(yaml.safe_load((ROOT / "conf" / "config.yaml").read_text()), ""):
        if f"`{key}" not in page:
            missing.add(f"{key} (conf/config.yaml)")
    assert not missing, f"docs/configuration.md does not name: {sorted(missing)}"


def bad_input_rows() -> list[tuple[list[str], str]]:
    """(arguments, the answer up to its first '...') of docs/failures.md's tables of answers to bad input.

    A row whose command cell is only the command is checked, its arguments split as a shell splits
    them (a quoted `'key=${oc.env:X}'` is one argument). The tables hold answers given before any data is read: those after it (a missing data file,
    split sizes larger than the data) cost a TensorFlow import each, and tests/test_bad_input.py
    checks them."""
    page = (ROOT / "docs" / "failures.md").read_text()
    rows = re.findall(r"^\| `dnnexp ([^`]+)` \| `([^`]+)` \|$", page, flags=re.MULTILINE)
    return [(shlex.split(args), answer.split("...")[0]) for args, answer in rows]


def test_failures_page_shows_the_answers_the_command_gives(tmp_path, monkeypatch):
    import dnnexp

    rows = bad_input_rows()
    assert len(rows) >= 8
    monkeypatch.chdir(tmp_path)  # a refused command leaves nothing behind, here included
    for args, answer in rows:
        with pytest.raises(dnnexp.DnnexpError) as refused:
            dnnexp.run(*args)
        assert str(refused.value).startswith(answer), f"dnnexp {' '.join(args)}: {refused.value}"
        assert refused.value.exit_code == 2
    assert not list(tmp_path.iterdir())
