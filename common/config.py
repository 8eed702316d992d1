"""Typed configuration: one TOML file (``soko.toml``), one dataclass per service section.

Every key has a default so an all-in-one needs no file at all; a value of the wrong type
or an unknown key stops the service at start with an error that names ``[section] key``.
``SOKO_<SECTION>_<KEY>`` environment variables override the file (``SOKO_BLOCK_PORT=9000``).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type; the message names it."""


@dataclasses.dataclass
class ServerSection:
    """What every HTTP service shares: where it listens and how gunicorn runs it."""

    bind_ip: str = "127.0.0.1"
    port: int = 0
    workers: int = 2
    threads: int = 8  # threads a worker keeps; more start on demand, up to max_clients
    max_clients: int = 1024  # connections one worker serves at once (as Swift's max_clients)
    worker_class: str = "gthread"  # soko's gthread worker (common/worker.py), the only one
    timeout: int = 60  # a worker that stops answering its master this long is restarted
    # A client that sends nothing of its request body (or reads nothing of the answer) for
    # this long gets 408 and is disconnected: Swift's client_timeout.
    client_timeout: float = 60.0
    # A request head (request line and headers) must be complete this long after its first
    # byte (a new connection: after it was accepted), or 408 and disconnected.
    header_timeout: float = 20.0

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port: {self.port} is not a TCP port (0-65535)")
        if self.workers < 1:
            raise ConfigError(f"workers: must be at least 1, got {self.workers}")
        if self.threads < 1:
            raise ConfigError(f"threads: must be at least 1, got {self.threads}")
        if self.max_clients < self.threads:
            raise ConfigError(f"max_clients: must be at least threads ({self.threads}), "
                              f"got {self.max_clients}")
        if self.worker_class != "gthread":
            raise ConfigError(f"worker_class: must be 'gthread', got {self.worker_class!r}")
        for key in ("client_timeout", "header_timeout"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key}: must be more than 0 seconds, got {getattr(self, key)}")

    @property
    def endpoint(self) -> str:
        return f"http://{self.bind_ip}:{self.port}"


@dataclasses.dataclass
class Config:
    """The whole configuration: the data directory and one typed object per section."""

    data_dir: Path
    sections: dict[str, Any]
    path: Path | None = None

    def section(self, name: str) -> Any:
        try:
            return self.sections[name]
        except KeyError:
            raise ConfigError(f"[{name}]: no such section is registered") from None


def load_config(
    path: str | os.PathLike | None,
    section_types: Mapping[str, type],
    *,
    data_dir: str | os.PathLike | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Reads ``path`` (may be None for all defaults), applies environment overrides, validates."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None

    top = raw.pop("soko", {})
    unknown_top = set(top) - {"data_dir"}
    if unknown_top:
        raise ConfigError(f"[soko] {sorted(unknown_top)[0]}: unknown key")
    unknown_sections = set(raw) - set(section_types)
    if unknown_sections:
        name = sorted(unknown_sections)[0]
        raise ConfigError(f"[{name}]: unknown section (known: {', '.join(sorted(section_types))})")

    resolved_dir = data_dir or environ.get("SOKO_DATA_DIR") or top.get("data_dir")
    if resolved_dir is None:
        resolved_dir = Path(path).parent if path is not None else Path(".soko")
    sections = {
        name: build_section(name, cls, raw.get(name, {}), environ)
        for name, cls in section_types.items()
    }
    return Config(
        data_dir=Path(resolved_dir).absolute(),
        sections=sections,
        path=Path(path).absolute() if path is not None else None,
    )


def build_section(name: str, cls: type, values: Mapping[str, Any], environ: Mapping[str, str]):
    """Builds one section dataclass from TOML values plus ``SOKO_<NAME>_<KEY>`` overrides."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"[{name}]: must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in fields:
            raise ConfigError(f"[{name}] {key}: unknown key (known: {', '.join(sorted(fields))})")
    kwargs = {}
    prefix = f"SOKO_{name.upper().replace('-', '_')}_"
    for key in fields:
        where = f"[{name}] {key}"
        env_key = prefix + key.upper()
        if env_key in environ:
            kwargs[key] = coerce(f"{where} (from ${env_key})", hints[key], environ[env_key], True)
        elif key in values:
            kwargs[key] = coerce(where, hints[key], values[key], False)
    section = cls(**kwargs)
    validate = getattr(section, "validate", None)
    if validate is not None:
        try:
            validate()
        except ConfigError as exc:
            raise ConfigError(f"[{name}] {exc}") from None
    return section


def coerce(where: str, hint: Any, value: Any, from_env: bool) -> Any:
    """Checks (and for environment strings, converts) one value against its annotation."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (from_env and value == ""):
            return None
        return coerce(where, options[0], value, from_env)
    if origin is list:
        (item,) = typing.get_args(hint) or (str,)
        if from_env:
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [coerce(where, item, v, from_env) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if hint is bool:
        if from_env:
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
        elif isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint in (int, float):
        if from_env:
            try:
                return hint(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if hint is int and not isinstance(value, int):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a path string, got {value!r}")
        return Path(value)
    raise ConfigError(f"{where}: unsupported setting type {hint!r}")


def dump_toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """Writes flat sections of scalars and lists as TOML (enough for a generated soko.toml)."""
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            if value is not None:
                lines.append(f"{key} = {toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")
