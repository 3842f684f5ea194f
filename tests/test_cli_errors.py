"""Every command reports errors the same way: one line and exit 2 for a user error, one line and exit 1
for a bug, the traceback only with --debug / SODAKIT_DEBUG=1."""

from __future__ import annotations

import errno
import sys
import types

import pytest

from sodakit import cli
from sodakit.cli import main as cli_main
from sodakit.errors import UserError


@pytest.fixture()
def fake_command(monkeypatch):
    """`sodakit fake ...` runs `raise_it()`; returns a setter for what it raises."""
    module = types.ModuleType("sodakit_fake_command")
    holder: dict = {}

    def main(argv):
        raise holder["exc"]

    module.main = main
    monkeypatch.setitem(sys.modules, "sodakit_fake_command", module)
    monkeypatch.setitem(cli.COMMANDS, "fake", ("sodakit_fake_command", "test"))
    monkeypatch.setattr(cli, "available_commands", lambda: dict(cli.COMMANDS))
    monkeypatch.delenv("SODAKIT_DEBUG", raising=False)

    def set_exc(exc: BaseException) -> None:
        holder["exc"] = exc

    return set_exc


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("exc", "code", "expected"),
    [
        (UserError("data.sources is empty"), 2, "sodakit fake: error: data.sources is empty"),
        (ValueError("global_batch must be >= 1, got 0"), 2, "sodakit fake: error: global_batch must be >= 1, got 0"),
        (FileNotFoundError("runs/x does not exist"), 2, "sodakit fake: error: runs/x does not exist"),
        (OSError(errno.ENOSPC, "No space left on device", "/data/out/tokens-00003.bin"), 2,
         "sodakit fake: error: /data/out/tokens-00003.bin: No space left on device (the disk is full"),
        (PermissionError(errno.EACCES, "Permission denied", "/root/x"), 2, "sodakit fake: error: /root/x: Permission denied"),
        (ModuleNotFoundError("No module named 'pocketsphinx'", name="pocketsphinx"), 2,
         "the Python package 'pocketsphinx' is needed here but not installed"),
        (ZeroDivisionError("division by zero"), 1,
         "sodakit fake: internal error (a bug in sodakit, please report it): ZeroDivisionError: division by zero"),
        (KeyError("step"), 1, "internal error (a bug in sodakit, please report it): KeyError: 'step'"),
        (KeyboardInterrupt(), 130, "sodakit fake: interrupted"),
    ],
)
def test_one_line_and_exit_code(fake_command, capsys, exc, code, expected):
    fake_command(exc)
    assert cli_main(["fake"]) == code
    err = lines(capsys.readouterr().err)
    assert len(err) == 1, err
    assert expected in err[0]
    assert "Traceback" not in err[0]


def test_multi_line_messages_become_one_line(fake_command, capsys):
    fake_command(ValueError("first part\n  second part"))
    assert cli_main(["fake"]) == 2
    assert lines(capsys.readouterr().err) == ["sodakit fake: error: first part second part"]


def test_bug_message_points_to_debug(fake_command, capsys):
    fake_command(AttributeError("'NoneType' object has no attribute 'x'"))
    assert cli_main(["fake"]) == 1
    assert "sodakit --debug fake" in capsys.readouterr().err


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_prints_the_traceback(fake_command, capsys, monkeypatch, how):
    fake_command(ValueError("bad input"))
    argv = ["--debug", "fake"] if how == "flag" else ["fake"]
    if how == "env":
        monkeypatch.setenv("SODAKIT_DEBUG", "1")
    assert cli_main(argv) == 2  # the exit code does not change with --debug
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "raise holder" in err
    assert err.strip().splitlines()[-1] == "sodakit fake: error: bad input"


def test_exit_code_of_a_user_error_subclass(fake_command, capsys):
    from sodakit.train.trainer import NonFiniteLossError

    fake_command(NonFiniteLossError("non-finite loss at step 3"))
    assert cli_main(["fake"]) == 3
    assert lines(capsys.readouterr().err) == ["sodakit fake: error: non-finite loss at step 3"]


# Real commands whose user errors used to end in a Python traceback.
def test_pack_errors_are_one_line(tmp_path, capsys):
    assert cli_main(["pack", f"output={tmp_path / 'o'}", "tokenizer=x"]) == 2
    assert lines(capsys.readouterr().err) == ["sodakit pack: error: pack: no inputs (set inputs=[path, ...])"]
    assert cli_main(["pack", f"inputs=[{tmp_path / 'missing.txt'}]", f"output={tmp_path / 'o'}", "tokenizer=x"]) == 2
    err = lines(capsys.readouterr().err)
    assert len(err) == 1 and "missing.txt does not exist" in err[0]
    assert cli_main(["pack", "shard_tokens=zero"]) == 2
    err = lines(capsys.readouterr().err)
    assert len(err) == 1 and "shard_tokens" in err[0]


def test_inspect_errors_are_one_line(tmp_path, capsys):
    assert cli_main(["inspect", str(tmp_path / "nothing")]) == 2
    err = lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith("sodakit inspect: error: ") and "nothing" in err[0]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metadata.json").write_text("{not json")
    assert cli_main(["inspect", str(tmp_path / "bad")]) == 2
    err = lines(capsys.readouterr().err)
    assert len(err) == 1 and "metadata.json" in err[0]


def test_unknown_command_is_a_user_error(capsys):
    assert cli_main(["--debug", "no-such-stage"]) == 2
