"""The CLI loads a command's module only when that command runs: `--help` lists every
command from `gateway.cli.COMMANDS` without importing any, and only `sandbox` and
`simulate` import the sandbox."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from gateway.cli import COMMANDS, cli
from gateway.cli.lazy import LazyGroup
from tests.support.procs import PYTHON, clean_env

# What a command needs and `--help` must not pay for.
HEAVY = ("uvicorn", "tortoise", "starlette", "sandbox", "pydantic", "httpx", "stripe", "rich")


def _modules_after(tmp_path: Path, code: str) -> set[str]:
    """The modules a fresh interpreter holds after running `code` (its stdout swallowed)."""
    script = (
        "import contextlib, io, json, sys\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        + "".join(f"    {line}\n" for line in code.splitlines())
        + "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [PYTHON, "-c", script],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(json.loads(result.stdout))


def _loaded(name: str) -> click.Command:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None, name
    return command


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_listed_summary_is_the_first_paragraph_of_the_commands_help(name: str) -> None:
    command = _loaded(name)

    assert command.name == name
    assert command.help is not None
    first_paragraph = command.help.partition("\n\n")[0]
    assert " ".join(COMMANDS[name].summary.split()) == " ".join(first_paragraph.split())


@pytest.mark.parametrize("width", [60, 100, 200])
def test_help_lists_the_commands_as_their_own_help_would(width: int) -> None:
    settings = cli.context_settings
    unloaded = LazyGroup(lazy=COMMANDS, context_settings=settings)
    loaded = click.Group(
        commands={name: _loaded(name) for name in COMMANDS}, context_settings=settings
    )

    listing = CliRunner().invoke(unloaded, ["--help"], terminal_width=width)
    expected = CliRunner().invoke(loaded, ["--help"], terminal_width=width)

    assert listing.exit_code == expected.exit_code == 0
    assert "Commands:\n  btcpay " in listing.output
    assert listing.output == expected.output
    assert unloaded.commands == {}  # listed without loading any


def test_help_imports_no_command_module_and_nothing_heavy(tmp_path: Path) -> None:
    loaded = _modules_after(tmp_path, "from gateway.cli import main\nmain(['--help'])")

    assert sorted(m for m in loaded if m.split(".")[0] in HEAVY) == []
    assert sorted(m for m in loaded if m.startswith("gateway.cli.")) == ["gateway.cli.lazy"]


def test_only_the_sandbox_and_simulate_commands_import_the_sandbox(tmp_path: Path) -> None:
    others = sorted(set(COMMANDS) - {"sandbox", "simulate"})
    load = "import click\nfrom gateway.cli import cli\nctx = click.Context(cli)\n"
    every_other = _modules_after(
        tmp_path, load + "".join(f"cli.get_command(ctx, {n!r})\n" for n in others)
    )
    simulate = _modules_after(tmp_path, load + "cli.get_command(ctx, 'simulate')")

    assert {"gateway.cli.serve", "gateway.cli.licenses"} <= every_other
    assert sorted(m for m in every_other if m.split(".")[0] == "sandbox") == []
    assert "sandbox.stripe.objects" in simulate
