"""Both engines provide the Engine Protocol's members with its parameters, and every private name dnnexp relies on
still exists in the installed libraries."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

from dnnexp.engines import private_api
from dnnexp.engines.base import MEMBERS, Engine

ENGINES = ["tensorflow", "jax"]


def engine_module(name: str):
    if name == "jax":
        pytest.importorskip("jax")
    return importlib.import_module(f"dnnexp.engines.{name}")


@pytest.mark.parametrize("name", ENGINES)
def test_each_engine_provides_every_member_of_the_protocol(name):
    module = engine_module(name)
    missing = [member for member in MEMBERS if not hasattr(module, member)]
    assert not missing, f"dnnexp.engines.{name} lacks {missing}"
    assert isinstance(module, Engine)
    for member in MEMBERS:
        wanted = getattr(Engine, member, None)
        if inspect.isfunction(wanted):
            expected = [p for p in inspect.signature(wanted).parameters if p != "self"]
            assert list(inspect.signature(getattr(module, member)).parameters) == expected, (name, member)
        else:
            assert inspect.isclass(getattr(module, member)), (name, member)


def test_the_protocol_lists_what_the_callers_use():
    """Every ``engine.X`` that dnnexp's modules call is a member of the Protocol."""
    source = Path(importlib.import_module("dnnexp").__file__).parent
    used = {m for path in source.rglob("*.py") for m in re.findall(r"\bengine\.([A-Za-z_]+)", path.read_text())}
    assert used and used <= set(MEMBERS), used - set(MEMBERS)


@pytest.mark.parametrize("name", private_api.PRIVATE_NAMES, ids=lambda n: f"{n.module}:{n.attribute}")
def test_every_listed_private_name_still_exists(name):
    if name.module.startswith(("keras.src.backend.jax", "jax")):
        pytest.importorskip("jax")
    try:
        private_api.resolve(name)
    except (ImportError, AttributeError) as err:
        pytest.fail(f"{name.module} {name.attribute} is gone ({err}); dnnexp was checked on {name.library} {name.checked}: "
                    "see dnnexp/engines/private_api.py")


def test_private_names_are_bounded_in_pyproject():
    """Each library with a listed private name has an upper version bound in pyproject.toml's dependencies."""
    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]
    for library in {n.library for n in private_api.PRIVATE_NAMES}:
        pins = [r for r in requirements if re.match(rf"{re.escape(library)}\b(?!-)", r)]
        assert pins and all("<" in r for r in pins), (library, pins)
