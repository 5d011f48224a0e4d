"""Typed configuration: defaults, then a YAML file, then ``SOLSTICE_*`` variables.

Each part declares its settings as frozen dataclasses (nested dataclasses for
sections). ``load_config`` fills them from, in rising priority:

1. the dataclass defaults (enough for single-node with no file at all),
2. a YAML file whose keys mirror the field names (unknown keys are errors),
3. environment variables named ``SOLSTICE_`` + the field path in upper case,
   joined with ``_`` (``github.webhook_secret`` -> ``SOLSTICE_GITHUB_WEBHOOK_SECRET``);
   a field may name its own variable with ``field(metadata={"env": "..."})``.

Durations accept ``90s``/``30m``/``2h`` strings; lists from the environment
are comma-separated; booleans accept true/false/yes/no/on/off/1/0.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from common.durations import parse_duration
from common.errors import ConfigError, DurationError

T = TypeVar("T")
ENV_PREFIX = "SOLSTICE_"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Seconds(float):
    """A duration field: YAML/env accept ``90s``-style text or a number of seconds."""


def load_config(
    cls: type[T],
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    prefix: str = ENV_PREFIX,
) -> T:
    """Build ``cls`` from defaults, the YAML file at ``path`` and ``env``."""
    data: dict[str, Any] = {}
    if path is not None:
        data = read_yaml(Path(path))
    env = os.environ if env is None else env
    return _build(cls, data, env, prefix, where="")


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{at}: not valid YAML: {getattr(err, 'problem', err)}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    return data


def env_name(field_path: str, prefix: str = ENV_PREFIX) -> str:
    return prefix + field_path.replace(".", "_").upper()


def _build(cls: type[T], data: Mapping[str, Any], env: Mapping[str, str], prefix: str, where: str) -> T:
    if not isinstance(data, Mapping):
        raise ConfigError(f"setting {where.rstrip('.') or '(top level)'} must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown setting {where}{unknown[0]!s}; known settings here: "
            + ", ".join(where + name for name in fields)
        )
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, f in fields.items():
        hint = hints[name]
        path = where + name
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            values[name] = _build(hint, data.get(name) or {}, env, prefix, path + ".")
            continue
        var = f.metadata.get("env") or env_name(path, prefix)
        if var in env:
            values[name] = _coerce(hint, env[var], f"{var} (environment)", from_env=True)
        elif name in data:
            values[name] = _coerce(hint, data[name], path, from_env=False)
    return cls(**values)


def _coerce(hint: Any, value: Any, what: str, from_env: bool) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if value is None or (from_env and value == ""):
            return None
        return _coerce(inner[0], value, what, from_env)
    if hint is Seconds:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return Seconds(value)
        try:
            return Seconds(parse_duration(str(value)))
        except DurationError as err:
            raise ConfigError(f"{what}: {err}") from err
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"{what}: expected true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{what}: expected a number, got {value!r}")
        try:
            return hint(value)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{what}: expected a number, got {value!r}") from err
    if hint is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{what}: expected text, got a {type(value).__name__}")
        return str(value)
    if hint is Path:
        return Path(str(value)).expanduser()
    if origin in (tuple, list):
        items = [v.strip() for v in value.split(",") if v.strip()] if from_env and isinstance(value, str) else value
        if not isinstance(items, list):
            raise ConfigError(f"{what}: expected a list, got {value!r}")
        item_hint = args[0] if args else str
        return tuple(_coerce(item_hint, v, f"{what}[{i}]", from_env) for i, v in enumerate(items))
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{what}: expected a mapping, got {value!r}")
        if len(args) == 2 and isinstance(args[1], type) and dataclasses.is_dataclass(args[1]):
            # e.g. an image catalog: label -> section; only from YAML.
            return {
                str(k): _build(args[1], v or {}, {}, "", f"{what}.{k}.")
                for k, v in value.items()
            }
        return dict(value)
    raise ConfigError(f"{what}: unsupported setting type {hint!r}")
