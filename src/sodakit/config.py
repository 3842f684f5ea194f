"""Typed configs: dataclasses that load from YAML and take dotted command-line overrides.

Every stage declares its config as a (nested) dataclass. `load_config` merges, in order:
the dataclass defaults, an optional YAML file, then `a.b.c=value` overrides, through OmegaConf's
structured configs, which type-check every field (a wrong type or an unknown key is an error naming
the key). The result is a plain dataclass instance, so library code never sees OmegaConf.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sodakit.fileio import atomic_write_bytes, atomic_write_text

__all__ = ["ConfigError", "Flag", "atomic_write_bytes", "atomic_write_text", "check_ranges", "describe", "from_dict",
           "load_config", "parse_config_args", "save_config", "to_dict"]

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit the declared dataclass."""


# The shipped recipes (train_135m.yaml, isoflop_mini.yaml, ...), also inside an installed wheel.
SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"


def resolve_config_path(path: str | os.PathLike) -> Path:
    """A config file: the path itself, else the shipped config of that name (`train_135m`,
    `configs/train_135m.yaml` outside a checkout); a clear error listing the shipped ones otherwise."""
    path = Path(path)
    if path.is_file():
        return path
    shipped = SHIPPED_CONFIGS / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in SHIPPED_CONFIGS.glob("*.yaml"))
    raise ConfigError(f"config file {path} does not exist (shipped configs, usable by name: {', '.join(names)})")


def load_config(
    cls: type[T],
    path: str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    values: dict[str, Any] | None = None,
) -> T:
    """Build a `cls` instance from its defaults, an optional YAML file, a nested dict of `values`
    (taken as given, e.g. from command-line flags) and dotted overrides, in that order."""
    base = OmegaConf.structured(cls)
    layers = [base]
    if path is not None:
        path = resolve_config_path(path)
        try:
            layers.append(OmegaConf.load(path))
        except Exception as e:  # yaml errors come in several types
            raise ConfigError(f"config file {path}: not valid YAML ({e})") from e
    if values:
        layers.append(OmegaConf.create(values))
    if overrides:
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"overrides must look like key.sub=value, got {bad}")
        layers.append(OmegaConf.from_dotlist(list(overrides)))
    try:
        merged = OmegaConf.merge(*layers)
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        where = f" (from {path})" if path is not None else ""
        raise ConfigError(f"invalid config for {cls.__name__}{where}: {e}") from e


def _get(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def check_ranges(
    cfg: Any,
    positive: tuple[str, ...] = (),
    non_negative: tuple[str, ...] = (),
    unit_interval: tuple[str, ...] = (),
    prefix: str = "",
) -> None:
    """Refuse sizes and fractions that cannot work (a batch of 0, a warmup of 150%) with a ConfigError
    naming the key, before they turn into a ZeroDivisionError or an empty run deep inside a stage.

    Keys are dotted paths into `cfg`; a None value (an unset optional) passes. `prefix` is prepended to
    the key in messages (e.g. "train." for a nested config).
    """

    def fail(key: str, value: Any, expected: str) -> None:
        raise ConfigError(f"{prefix}{key} must be {expected}, got {value!r}")

    for key in positive:
        value = _get(cfg, key)
        if value is not None and not value > 0:
            fail(key, value, "> 0")
    for key in non_negative:
        value = _get(cfg, key)
        if value is not None and not value >= 0:
            fail(key, value, ">= 0")
    for key in unit_interval:
        value = _get(cfg, key)
        if value is not None and not 0 <= value <= 1:
            fail(key, value, "between 0 and 1")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON/YAML-safe dict of a config dataclass (nested dataclasses, tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a config dataclass from `to_dict` output, with the same type checks as `load_config`."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.create(data)))  # type: ignore[return-value]
    except OmegaConfBaseException as e:
        raise ConfigError(f"invalid {cls.__name__} record: {e}") from e


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    """Write a config as YAML, atomically."""
    atomic_write_text(Path(path), yaml.safe_dump(to_dict(cfg), sort_keys=False))


def describe(cls: type, prefix: str = "") -> list[str]:
    """One line per leaf field, `key: type = default`, for `--help` output."""
    lines: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        ftype = hints.get(f.name)
        if isinstance(ftype, type) and dataclasses.is_dataclass(ftype):
            lines.extend(describe(ftype, key + "."))
            continue
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
            if dataclasses.is_dataclass(value):
                lines.extend(describe(type(value), key + "."))
                continue
            default = repr(value)
        else:
            default = "(required)"
        tname = ftype.__name__ if isinstance(ftype, type) else str(ftype).replace("typing.", "")
        lines.append(f"  {key}: {tname} = {default}")
    return lines


@dataclasses.dataclass(frozen=True)
class Flag:
    """A command-line flag kept as another spelling of a config key: `--batch-size 4` is `batch_size=4`.

    How it reads follows the key's type: a bool key is a switch (`--log-items`), a list key takes a
    comma-separated value (`--tasks a,b`), a dict key takes KEY=VALUE and may repeat (`--data t=DIR`),
    any other key one value, converted and checked like a key=value override.
    """

    key: str
    help: str = ""
    choices: tuple[str, ...] | None = None
    metavar: str | None = None


def _field_type(cls: type, key: str) -> Any:
    """The declared type of a dotted config key, with Optional[...] unwrapped."""
    ftype: Any = cls
    for part in key.split("."):
        hints = typing.get_type_hints(ftype)
        if part not in hints:
            raise KeyError(f"{cls.__name__} has no config key {key!r}")
        ftype = hints[part]
        args = [a for a in typing.get_args(ftype) if a is not type(None)]
        if typing.get_origin(ftype) in (typing.Union, types.UnionType) and len(args) == 1:
            ftype = args[0]
    return ftype


def _flag_kind(cls: type, key: str) -> str:
    ftype = _field_type(cls, key)
    origin = typing.get_origin(ftype)
    if ftype is bool:
        return "switch"
    if origin is list:
        return "list"
    if origin is dict:
        return "dict"
    return "value"


def _set_dotted(tree: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[last] = value


def parse_config_args(
    cls: type[T],
    argv: list[str] | None,
    prog: str,
    description: str,
    flags: dict[str, str | Flag] | None = None,
    positional: str | None = None,
) -> tuple[T, Path | None]:
    """Parse `[CONFIG.yaml] [key.sub=value ...]` for a command whose whole input is one config.

    `flags` keeps argparse-style flags as aliases of config keys (see `Flag`); key=value overrides come
    after them, so they win. `positional` names a list key that takes the bare arguments (input files);
    the config file is then recognised by its .yaml/.yml suffix. `--help` lists every field with its
    type and default.
    """
    epilog = "config fields (override with key=value):\n" + "\n".join(describe(cls))
    parser = argparse.ArgumentParser(
        prog=prog, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    what = f"optional CONFIG.yaml, key=value overrides{f', {positional} files' if positional else ''}"
    parser.add_argument("args", nargs="*", help=what)
    specs = [(name, spec if isinstance(spec, Flag) else Flag(spec)) for name, spec in (flags or {}).items()]
    for i, (name, flag) in enumerate(specs):
        kind = _flag_kind(cls, flag.key)
        metavar = flag.metavar or ("KEY=VALUE" if kind == "dict" else flag.key.rsplit(".", 1)[-1].upper())
        same = {"switch": f"{flag.key}=true", "list": f"{flag.key}=[A,B]", "dict": f"{flag.key}.{metavar}"}.get(
            kind, f"{flag.key}={metavar}")
        help_text = f"{flag.help} (= {same})" if flag.help else f"= {same}"
        if kind == "switch":
            parser.add_argument(name, dest=f"flag{i}", action="store_const", const=True, default=None, help=help_text)
        elif kind == "dict":
            parser.add_argument(name, dest=f"flag{i}", action="append", metavar=metavar, help=help_text)
        else:
            parser.add_argument(name, dest=f"flag{i}", choices=flag.choices, metavar=None if flag.choices else metavar,
                                help=help_text)
    ns = parser.parse_intermixed_args(argv)
    values: dict[str, Any] = {}
    for i, (name, flag) in enumerate(specs):
        given = getattr(ns, f"flag{i}")
        if given is None:
            continue
        kind = _flag_kind(cls, flag.key)
        if kind == "list":
            _set_dotted(values, flag.key, [v.strip() for v in given.split(",") if v.strip()])
        elif kind == "dict":
            for item in given:
                k, sep, v = item.partition("=")
                if not sep or not k.strip() or not v.strip():
                    raise ConfigError(f"{name} expects {flag.metavar or 'KEY=VALUE'}, got {item!r}")
                _set_dotted(values, f"{flag.key}.{k.strip()}", v.strip())
        else:
            _set_dotted(values, flag.key, given)
    overrides = [a for a in ns.args if "=" in a]
    bare = [a for a in ns.args if "=" not in a]
    path = None
    if bare and (positional is None or Path(bare[0]).suffix in (".yaml", ".yml")):
        path = Path(bare.pop(0))
    if bare and positional is None:
        raise ConfigError(f"{prog}: unexpected argument(s) {bare}; expected [CONFIG.yaml] key=value ...")
    if bare:
        _set_dotted(values, positional, bare)
    return load_config(cls, path, overrides, values), path
