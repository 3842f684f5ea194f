"""Typed configs: dataclasses that load from YAML and take dotted command-line overrides.

Every stage declares its config as a (nested) dataclass. `load_config` merges, in order:
the dataclass defaults, an optional YAML file, then `a.b.c=value` overrides, through OmegaConf's
structured configs, which type-check every field (a wrong type or an unknown key is an error naming
the key). The result is a plain dataclass instance, so library code never sees OmegaConf.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sodakit.fileio import atomic_write_bytes, atomic_write_text

__all__ = ["ConfigError", "atomic_write_bytes", "atomic_write_text", "check_ranges", "describe", "from_dict",
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


def load_config(cls: type[T], path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> T:
    """Build a `cls` instance from its defaults, an optional YAML file and dotted overrides."""
    base = OmegaConf.structured(cls)
    layers = [base]
    if path is not None:
        path = resolve_config_path(path)
        try:
            layers.append(OmegaConf.load(path))
        except Exception as e:  # yaml errors come in several types
            raise ConfigError(f"config file {path}: not valid YAML ({e})") from e
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


def parse_config_args(
    cls: type[T], argv: list[str] | None, prog: str, description: str
) -> tuple[T, Path | None]:
    """Parse `[CONFIG.yaml] [key.sub=value ...]` for a command whose whole input is one config.

    `--help` lists every field with its type and default.
    """
    import argparse

    epilog = "config fields (override with key=value):\n" + "\n".join(describe(cls))
    parser = argparse.ArgumentParser(
        prog=prog, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("args", nargs="*", help="optional CONFIG.yaml first, then key=value overrides")
    ns = parser.parse_args(argv)
    args: list[str] = list(ns.args)
    path = None
    if args and "=" not in args[0]:
        path = Path(args.pop(0))
    return load_config(cls, path, args), path
