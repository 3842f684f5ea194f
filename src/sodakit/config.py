"""Typed configs: dataclasses that load from YAML and take dotted command-line overrides.

Every stage declares its config as a (nested) dataclass. `load_config` merges, in order:
the dataclass defaults, an optional base (e.g. a named preset), an optional YAML file, the values of
command-line flags and positional arguments, then `a.b.c=value` overrides, through OmegaConf's
structured configs, which type-check every field (a wrong type or an unknown key is an error naming
the key). The result is a plain dataclass instance, so library code never sees OmegaConf.

Every command takes the same grammar, `sodakit CMD [CONFIG.yaml] [key.sub=value ...]`
(`parse_config_args`); a command may also keep flags (`--out DIR`) and positional arguments as other
spellings of its keys (`Flag`, `positionals`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sodakit.fileio import atomic_write_bytes, atomic_write_text

__all__ = ["ConfigError", "Flag", "atomic_write_bytes", "atomic_write_text", "check_ranges", "describe",
           "from_dict", "load_config", "parse_config_args", "save_config", "split_config_args", "to_dict"]

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
    *,
    base: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
) -> T:
    """Build a `cls` instance from its defaults, `base`, an optional YAML file, `values` ({dotted key:
    value}, taken literally: the values of flags) and dotted overrides (values parsed as YAML)."""
    layers = [OmegaConf.structured(cls)]
    if base:
        layers.append(OmegaConf.create(base))
    if path is not None:
        path = resolve_config_path(path)
        try:
            layers.append(OmegaConf.load(path))
        except Exception as e:  # yaml errors come in several types
            raise ConfigError(f"config file {path}: not valid YAML ({e})") from e
    if values:
        nested: dict[str, Any] = {}
        for key, value in values.items():
            *parents, last = key.split(".")
            node = nested
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
        layers.append(OmegaConf.create(nested))
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


@dataclass(frozen=True)
class Flag:
    """A command-line flag kept as another spelling of a config key: `--out DIR` means `out=DIR`.

    The flag is `--key-with-dashes` unless `name` says otherwise. `nargs="+"` takes several values (a
    list field); `const` makes a switch that sets the key to that value (`--json` means `json=true`,
    `--no-plots` means `plots=false`); `mapping` fills a dict field from repeated NAME=VALUE values
    (`--data swuggy=DIR` means `data.swuggy=DIR`); `choices` limits the values. Values are taken
    literally (not parsed as YAML) and type-checked like any other value of the key.
    """

    key: str
    help: str = ""
    nargs: str | None = None
    const: Any = None
    name: str = ""
    choices: tuple[str, ...] | None = None
    mapping: bool = False
    metavar: str = ""

    @property
    def flag(self) -> str:
        return self.name or "--" + self.key.replace("_", "-")


@dataclass
class ConfigArgs:
    """A command line read in the config grammar (see `split_config_args`)."""

    path: Path | None  # the config file
    overrides: list[str]  # key=value, in order
    values: dict[str, Any]  # {key: value} from flags and positional arguments


# `key.sub=value` (also `list[0]=value`); anything else holding a "=" (a path, say) is a plain argument.
_OVERRIDE = re.compile(r"^[A-Za-z_][\w.\[\]]*=")


def _is_list_field(cls: type, key: str) -> bool:
    hint = typing.get_type_hints(cls).get(key)
    return typing.get_origin(hint) is list or any(typing.get_origin(a) is list for a in typing.get_args(hint))


def split_config_args(
    cls: type,
    argv: list[str] | None,
    prog: str,
    description: str,
    *,
    flags: tuple[Flag, ...] = (),
    positionals: tuple[str, ...] = (),
    config_flag: str | None = None,
) -> ConfigArgs:
    """Read `[CONFIG.yaml] [POSITIONAL ...] [key.sub=value ...] [--flag VALUE ...]`.

    Without positionals the first argument that is not key=value is the config file (a path or a
    shipped config's name). With positionals, a config file must end in .yaml/.yml (it may also be
    given as `config_flag PATH`) and the other plain arguments are, in order, the keys `positionals`
    names. `--help` lists every field with its type and default, and the flags.
    """
    epilog = "config fields (override with key=value):\n" + "\n".join(describe(cls))
    parser = argparse.ArgumentParser(
        prog=prog, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    shape = " ".join(p.upper() for p in positionals)
    parser.add_argument("args", nargs="*", metavar="ARG",
                        help=f"[CONFIG.yaml] {shape + ' ' if shape else ''}[key=value ...]")
    if config_flag:
        parser.add_argument(config_flag, dest="config_file", metavar="CONFIG.yaml", default=None,
                            help="config file (YAML) of the fields below")
    for i, f in enumerate(flags):
        metavar = f.metavar or ("NAME=VALUE" if f.mapping else f.key.upper())
        if f.const is not None:
            kind: dict[str, Any] = {"action": "store_const", "const": f.const}
            spelled = f"{f.key}={json.dumps(f.const)}"
        elif f.mapping:
            kind, spelled = {"action": "append", "metavar": metavar}, f"{f.key}.{metavar}, repeatable"
        else:
            kind = {"nargs": f.nargs, "choices": f.choices, "metavar": None if f.choices else metavar}
            spelled = f"{f.key}=..."
        parser.add_argument(f.flag, dest=f"flag{i}", default=argparse.SUPPRESS, help=f"{f.help} (= {spelled})",
                            **kind)
    ns = parser.parse_intermixed_args(argv)
    fields = {f.name for f in dataclasses.fields(cls)}

    def is_override(arg: str) -> bool:
        return bool(_OVERRIDE.match(arg))

    overrides: list[str] = []
    values: dict[str, Any] = {}
    for i, f in enumerate(flags):
        if not hasattr(ns, f"flag{i}"):
            continue
        value = getattr(ns, f"flag{i}")
        if f.nargs in ("+", "*"):
            # A list flag swallows the key=value arguments after it; give them back.
            taken = [v for v in value if is_override(v) and v.split("=", 1)[0].split(".")[0] in fields]
            overrides += taken
            value = [v for v in value if v not in taken]
        if f.mapping:
            for item in value:
                name, sep, entry = item.partition("=")
                if not sep or not name.strip() or not entry.strip():
                    raise ConfigError(f"{f.flag} expects {f.metavar or 'NAME=VALUE'}, got {item!r}")
                values[f"{f.key}.{name.strip()}"] = entry.strip()
            continue
        values[f.key] = value
    path = Path(ns.config_file) if config_flag and ns.config_file else None
    args: list[str] = list(ns.args)
    if not positionals:
        if args and "=" not in args[0]:
            if path is not None:
                raise ConfigError(f"{prog}: two config files, {path} and {args[0]}")
            path = Path(args.pop(0))
        return ConfigArgs(path, overrides + args, values)
    slots = list(positionals)
    for arg in args:
        if is_override(arg):
            overrides.append(arg)
        elif path is None and arg.endswith((".yaml", ".yml")):
            path = Path(arg)
        elif slots and _is_list_field(cls, slots[0]):  # a list positional takes every argument left
            values.setdefault(slots[0], []).append(arg)
        elif slots:
            values[slots.pop(0)] = arg
        else:
            raise ConfigError(f"{prog}: unexpected argument {arg!r} (expected {shape} and key=value overrides)")
    return ConfigArgs(path, overrides, values)


def parse_config_args(
    cls: type[T],
    argv: list[str] | None,
    prog: str,
    description: str,
    *,
    flags: tuple[Flag, ...] = (),
    positionals: tuple[str, ...] = (),
    config_flag: str | None = None,
) -> tuple[T, Path | None]:
    """Parse `[CONFIG.yaml] [key.sub=value ...]` (plus the flags and positional arguments a command keeps,
    see `split_config_args`) into a `cls` for a command whose whole input is one config.

    Precedence, lowest first: the dataclass defaults, the config file, flags and positional arguments,
    key=value overrides.
    """
    a = split_config_args(cls, argv, prog, description, flags=flags, positionals=positionals,
                          config_flag=config_flag)
    return load_config(cls, a.path, a.overrides, values=a.values), a.path
