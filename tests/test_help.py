"""Every command's ``--help`` as a user reads it: present, exit 0, every option explained, and true for a plain
install and for a wheel (no extra named for what the plain install has, no repository that a wheel lacks)."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from blazeconv.cli import cli

# Said by a help text that has gone stale. ONNX Runtime and the ONNX exporter are in the plain install
# (pyproject.toml: dependencies), so no help may send the user to the `onnx` extra; an installed wheel has no
# repository, its photos and models ship inside the package (blazeconv/photos, blazeconv/models).
STALE = {
    "the onnx extra": re.compile(r"blazeconv\[onnx\]|\bonnx extra\b", re.IGNORECASE),
    "a repository": re.compile(r"\brepository", re.IGNORECASE),
}


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command below ``group`` as the words that name it (``("cache", "clear")``), subgroups included."""
    paths = []
    for name, command in sorted(group.commands.items()):
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths += _command_paths(command, (*prefix, name))
    return paths


COMMANDS = _command_paths(cli)


def _command(path: tuple[str, ...]) -> click.Command:
    command = cli
    for name in path:
        command = command.commands[name]
    return command


def test_every_registered_command_is_checked():
    assert {path[0] for path in COMMANDS} == set(cli.commands)
    assert len(COMMANDS) >= 9  # anchors, bench, blur, cache (clear), coreml, detect, onnx, tflite2torch, verify


@pytest.mark.parametrize("path", [(), *COMMANDS], ids=lambda p: " ".join(p) or "blazeconv")
def test_help_is_present_and_true(path):
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="blazeconv")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: {' '.join(('blazeconv', *path))} "), result.output
    text = " ".join(result.output.split())  # click rewraps the help to the terminal's width
    command = _command(path)
    assert (command.help or "").strip(), f"{command.name}: no help text"
    assert " ".join(command.help.split("\n\n")[0].split()) in text
    for option in command.params:
        if isinstance(option, click.Option) and not option.hidden:
            assert (option.help or "").strip(), f"{' '.join(path)} {option.opts[0]}: no help text"
    for what, pattern in STALE.items():
        found = pattern.search(text)
        assert found is None, f"blazeconv {' '.join(path)} --help speaks of {what}: {found.group(0)!r}"
