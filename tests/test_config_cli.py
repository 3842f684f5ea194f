from __future__ import annotations

import functools
from dataclasses import dataclass, field

import pytest

from sodakit.cli import COMMANDS
from sodakit.cli import main as cli_main
from sodakit.config import ConfigError, Flag, describe, load_config, parse_config_args


@dataclass
class Inner:
    lr: float = 1e-3
    name: str = "adamw"


@dataclass
class Outer:
    steps: int = 10
    inner: Inner = field(default_factory=Inner)
    tags: list[str] = field(default_factory=list)


def test_yaml_then_dotted_overrides(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("steps: 5\ninner:\n  name: cautious\n")
    cfg = load_config(Outer, cfg_file, ["inner.lr=0.5", "tags=[a,b]"])
    assert isinstance(cfg, Outer) and isinstance(cfg.inner, Inner)
    assert (cfg.steps, cfg.inner.name, cfg.inner.lr, cfg.tags) == (5, "cautious", 0.5, ["a", "b"])


def test_bad_configs_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="steps"):
        load_config(Outer, None, ["steps=notanint"])
    with pytest.raises(ConfigError, match="nope"):
        load_config(Outer, None, ["inner.nope=1"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Outer, tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(Outer, None, ["steps"])


def test_describe_lists_nested_fields():
    text = "\n".join(describe(Outer))
    assert "inner.lr: float = 0.001" in text and "steps: int = 10" in text


def test_parse_config_args_takes_optional_yaml(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("steps: 7\n")
    cfg, path = parse_config_args(Outer, [str(cfg_file), "inner.lr=2"], "x", "d")
    assert (cfg.steps, cfg.inner.lr, path) == (7, 2.0, cfg_file)
    cfg, path = parse_config_args(Outer, ["steps=3"], "x", "d")
    assert (cfg.steps, path) == (3, None)


def test_cli_help_and_unknown(capsys):
    assert cli_main(["--help"]) == 0
    assert "commands:" in capsys.readouterr().out
    assert cli_main(["no-such-stage"]) == 2


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_stage_is_listed_and_has_help(command, capsys):
    assert cli_main(["--help"]) == 0
    assert f"  {command} " in capsys.readouterr().out  # listed, so its module exists
    with pytest.raises(SystemExit) as exc:
        cli_main([command, "--help"])
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_shipped_configs_load_by_name_from_anywhere(tmp_path, monkeypatch):
    from sodakit.config import ConfigError, load_config, resolve_config_path
    from sodakit.train.config import TrainConfig

    monkeypatch.chdir(tmp_path)  # outside a checkout: no ./configs here
    by_name = load_config(TrainConfig, "train_135m")
    assert by_name == load_config(TrainConfig, "configs/train_135m.yaml")
    assert by_name.model.preset == "135M"
    assert resolve_config_path("isoflop_mini").name == "isoflop_mini.yaml"
    with pytest.raises(ConfigError, match="does not exist .*shipped configs.*train_135m"):
        load_config(TrainConfig, "train_nope")
    local = tmp_path / "train_135m.yaml"  # a user's own file of the same name wins
    local.write_text("steps: 7\n")
    assert load_config(TrainConfig, "train_135m.yaml").steps == 7


@dataclass
class Command:
    src: str = "???"
    out: str = "???"
    tags: list[str] = field(default_factory=list)
    n: int = 1
    json: bool = False


COMMAND_FLAGS = (Flag("tags", nargs="+"), Flag("n"), Flag("json", const=True))


def test_flags_and_positionals_are_other_spellings_of_keys(tmp_path):
    parse = functools.partial(parse_config_args, Command, prog="x", description="d", flags=COMMAND_FLAGS,
                              positionals=("src", "out"))
    by_keys, _ = parse(["src=a", "out=b", "tags=[x, y]", "n=3", "json=true"])
    by_flags, path = parse(["a", "--tags", "x", "y", "--n", "3", "b", "--json"])
    assert by_flags == by_keys == Command("a", "b", ["x", "y"], 3, True) and path is None
    # a list flag gives back the key=value arguments it swallowed; key=value wins over a flag
    cfg, _ = parse(["a", "b", "--n", "2", "--tags", "x", "n=5"])
    assert (cfg.tags, cfg.n) == (["x"], 5)
    # a YAML file first; a plain argument holding "=" (a path) is a positional; flag values are literal
    (tmp_path / "c.yaml").write_text("n: 4\nout: from_yaml\n")
    cfg, path = parse([str(tmp_path / "c.yaml"), "dir/x=y", "--tags", "a: b"])
    assert (cfg.src, cfg.out, cfg.n, cfg.tags, path) == ("dir/x=y", "from_yaml", 4, ["a: b"], tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="unexpected argument 'c'"):
        parse(["a", "b", "c"])
    with pytest.raises(ConfigError, match="n"):
        parse(["a", "b", "--n", "many"])



@dataclass
class WithFlags:
    steps: int = 10
    verbose: bool = False
    inner: Inner = field(default_factory=Inner)
    tags: list[str] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)


FLAGS = (Flag("steps"), Flag("verbose", const=True), Flag("inner.lr", name="--lr"), Flag("tags", nargs="+"),
         Flag("paths", mapping=True, metavar="NAME=PATH", name="--path"),
         Flag("inner.name", name="--name", choices=("adamw", "muon")))


def test_mapping_choice_and_list_positional_flags(tmp_path, capsys):
    argv = ["--steps", "3", "--verbose", "--lr", "0.5", "--tags", "a", "b", "--path", "x=/p", "--path", "y=/q",
            "--name", "muon"]
    cfg, _ = parse_config_args(WithFlags, argv, "x", "d", flags=FLAGS)
    assert (cfg.steps, cfg.verbose, cfg.inner.lr, cfg.tags, cfg.paths, cfg.inner.name) == (
        3, True, 0.5, ["a", "b"], {"x": "/p", "y": "/q"}, "muon")
    # key=value wins over the flags, and both over the YAML file
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("steps: 7\ninner:\n  lr: 2.0\n")
    cfg, path = parse_config_args(WithFlags, [str(cfg_file), "--steps", "4", "steps=5", "--lr", "3"], "x", "d",
                                  flags=FLAGS)
    assert (cfg.steps, cfg.inner.lr, path) == (5, 3.0, cfg_file)
    # a list positional takes every plain argument (the config file is known by its suffix)
    cfg, path = parse_config_args(WithFlags, [str(cfg_file), "a.wav", "--steps", "1", "b.wav"], "x", "d",
                                  flags=FLAGS, positionals=("inputs",))
    assert (cfg.inputs, cfg.steps, path) == (["a.wav", "b.wav"], 1, cfg_file)
    with pytest.raises(ConfigError, match="--path expects NAME=PATH, got 'x'"):
        parse_config_args(WithFlags, ["--path", "x"], "x", "d", flags=FLAGS)
    with pytest.raises(SystemExit):
        parse_config_args(WithFlags, ["--name", "sgd"], "x", "d", flags=FLAGS)
    assert "invalid choice" in capsys.readouterr().err
