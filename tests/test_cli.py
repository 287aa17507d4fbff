"""The ``fedshift`` command: -v anywhere, one-line config errors, ``config show``."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedshift import cli, logs
from fedshift.config import CONFIG_DIR, load_config
from fedshift.runconfig import RunConfig, default_run, flatten


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """cli.main configures the root logger and FEDSHIFT_VERBOSE: undo it after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    monkeypatch.setenv(logs.VERBOSE_ENV, os.environ.get(logs.VERBOSE_ENV, "0"))
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in logs.CHATTY:
        logging.getLogger(name).setLevel(logging.NOTSET)


@pytest.mark.parametrize(
    "argv,verbose",
    [
        (["config", "show"], False),
        (["-v", "config", "show"], True),
        (["config", "show", "-v"], True),
        (["config", "-v", "show", "fed.rounds=2"], True),
        (["config", "show", "fed.rounds=2", "--verbose"], True),
    ],
)
def test_verbose_before_or_after_the_subcommand(
    argv: list[str], verbose: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 0
    assert logging.getLogger().level == (logging.DEBUG if verbose else logging.INFO)
    assert logs.verbose() is verbose
    assert "rounds: 2" in capsys.readouterr().out or "fed.rounds=2" not in argv


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["simulate", "--config", "missing.yaml"],
            "fedshift simulate: error: config file missing.yaml is invalid: "
            "expected an existing YAML file",
        ),
        (
            ["config", "show", "foo.bar=1"],
            "fedshift config: error: foo.bar=1 is invalid: unknown key 'foo'; "
            "valid keys: name, out, seed, resume, data, fed, seg, simulation",
        ),
        (
            ["simulate", "data.sites=/a"],
            "fedshift simulate: error: data.sites=/a is invalid: expected a list of strings; "
            "write a list: data.sites=[/a]",
        ),
    ],
)
def test_config_errors_are_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == message + "\n"


def _shown_keys(text: str) -> dict[str, bool]:
    """Dotted key -> whether a comment line sits right above it, for ``config show``."""
    keys: dict[str, bool] = {}
    path: list[str] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        name = line.strip().split(":", 1)[0]
        path[depth:] = [name]
        above = lines[i - 1] if i else ""
        keys[".".join(path)] = above.startswith("  " * depth + "# ")
    return keys


def test_config_show_prints_every_key_with_a_comment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["config", "show", "fed.rounds=3", "data.sites=[/a,b c]"]) == 0
    text = capsys.readouterr().out
    shown = _shown_keys(text)
    leaves = set(flatten(default_run()))
    assert leaves <= set(shown), sorted(leaves - set(shown))
    assert not [k for k, commented in shown.items() if not commented]
    assert re.search(r"^  # federated training rounds\n  rounds: 3$", text, re.MULTILINE)
    # the output is a config file that gives the same run back
    (tmp_path / "shown.yaml").write_text(text)
    again = load_config(RunConfig, [tmp_path / "shown.yaml"])
    overrides = ["fed.rounds=3", "data.sites=[/a,b c]"]
    assert again == load_config(RunConfig, [CONFIG_DIR / "default.yaml"], overrides)


def test_chatty_libraries_stay_out_of_debug(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["config", "show", "-v"]) == 0
    logging.getLogger("matplotlib.font_manager").debug("findfont: score(...) = 10.05")
    logging.getLogger("alembic.runtime.plugins").info("setup plugin alembic.autogenerate")
    logging.getLogger("fedshift.test").debug("a FedShift debug line")
    err = capsys.readouterr().err
    assert "findfont" not in err
    assert "setup plugin" in err and "a FedShift debug line" in err
    assert cli.main(["config", "show"]) == 0
    logging.getLogger("alembic.runtime.plugins").info("setup plugin alembic.autogenerate")
    logging.getLogger("fedshift.test").debug("a FedShift debug line")
    assert capsys.readouterr().err == ""
