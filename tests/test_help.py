"""`dnnexp --help`: the written list of choices is conf/'s, and the command prints it without Hydra's group listing."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.object_type import ObjectType

from dnnexp import cli, usage

CONF = Path(cli.config_dir())
# conf/'s folders that are not a user's choice: Hydra's own settings for dnnexp (its run folders, this help).
NOT_CHOICES = {"hydra", "hydra/help"}


def help_choices(section: str) -> dict[str, list[str]]:
    """``group: a, b, c`` lines of one ``== ... ==`` section of the help, as {group: [a, b, c]}."""
    body = usage.text(CONF).split(f"== {section}")[1].split("\n== ")[0]
    lines = re.findall(r"^([+\w/]+): (.+)$", body, flags=re.MULTILINE)
    return {group.lstrip("+"): options.split(", ") for group, options in lines}


def conf_groups() -> dict[str, list[str]]:
    """Every folder of conf/ with YAML files in it, as {group: sorted options}."""
    groups = {}
    for folder in sorted(p for p in CONF.rglob("*") if p.is_dir()):
        options = sorted(f.stem for f in folder.glob("*.yaml"))
        if options:
            groups[folder.relative_to(CONF).as_posix()] = options
    return groups


def test_help_lists_every_group_of_conf_with_every_option():
    listed = help_choices("Choices")
    for group, options in conf_groups().items():
        if group in NOT_CHOICES:
            continue
        if options == ["default"]:  # one YAML of settings (trainer, evaluation, lr_find): keys, not a choice
            assert f"{group}.*" in usage.text(CONF), f"--help does not mention {group}'s keys"
            continue
        assert group in listed, f"conf/{group}/ is a choice --help does not list"
        if group == "hydra/launcher":  # dnnexp's own launchers beside the plugins'
            assert set(options) <= set(listed[group]), f"--help misses a launcher of conf/{group}/"
        else:
            assert listed[group] == options, f"--help lists {group}: {listed[group]}, conf/{group}/ holds {options}"
    assert set(listed) <= set(conf_groups()) | {"hydra/launcher", "hydra/sweeper"}, "--help lists a group conf/ does not have"


def test_help_lists_only_launchers_and_sweepers_hydra_knows():
    """Hydra's own groups: the options the plugins (and dnnexp's claims sweeper) register, listed where a user picks one."""
    listed = help_choices("Choices")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        for group in ("hydra/launcher", "hydra/sweeper"):
            assert set(listed[group]) <= set(loader.get_group_options(group, ObjectType.CONFIG)), group
    assert "claims" in listed["hydra/sweeper"]  # dnnexp's own sweeper


def test_hydra_renders_the_same_help():
    """Hydra's own rendering (dnnexp's app run another way than the command) prints what the command prints."""
    help_cfg = yaml.safe_load((CONF / "hydra" / "help" / "dnnexp.yaml").read_text())
    assert help_cfg["template"] == "${hydra.help.header}\n${hydra.help.footer}\n"
    assert "$" not in usage.text(CONF)  # Hydra passes the text through string.Template


def test_help_is_answered_without_hydra_listing_config_groups(monkeypatch, capsys):
    """Hydra's listing copies the config repository once per group of every plugin: seconds (benchmarks/startup.py)."""
    from hydra._internal.hydra import Hydra

    def listing(*args, **kwargs):
        raise AssertionError("--help made Hydra list the config groups")

    monkeypatch.setattr(Hydra, "format_config_groups", listing)
    for flag in usage.HELP_FLAGS:
        monkeypatch.setattr(sys, "argv", ["dnnexp", "activation=selu", flag])
        cli.main()
        out = capsys.readouterr().out
        assert "activation: elu, gelu, leaky_relu, mish, prelu, relu, selu, sigmoid, swish, tanh" in out
        assert "dnnexp +experiment=activations" in out
