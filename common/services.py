"""The services soko runs: one line per service module, each exposing ``SERVICE``.

The CLI (``soko serve``), the config loader and ``soko up`` all read this list, so adding a
service is adding its module here.
"""

from __future__ import annotations

import importlib
import os

from soko.common.config import Config, load_config
from soko.common.service import ServiceSpec

SERVICE_MODULES: list[str] = [
    "soko.identity.service",
    "soko.object.node.service",
    "soko.object.proxy.service",
    "soko.object.daemons.service",
    "soko.block.service",
    "soko.image.service",
    "soko.net.service",  # before compute: its teardown (reversed) comes after the guests'
    "soko.compute.service",
]


def all_specs() -> list[ServiceSpec]:
    return [importlib.import_module(name).SERVICE for name in SERVICE_MODULES]


def spec_named(name: str) -> ServiceSpec:
    for spec in all_specs():
        if spec.name == name:
            return spec
    known = ", ".join(s.name for s in all_specs()) or "none yet"
    raise KeyError(f"no service named {name!r} (known: {known})")


def section_types(specs: list[ServiceSpec] | None = None) -> dict[str, type]:
    return {spec.name: spec.section for spec in (all_specs() if specs is None else specs)}


def load(
    config_path: str | os.PathLike | None,
    data_dir: str | os.PathLike | None = None,
    specs: list[ServiceSpec] | None = None,
) -> Config:
    """Loads ``soko.toml`` (or ``<data_dir>/soko.toml`` when it exists) for the known services."""
    if config_path is None and data_dir is not None:
        candidate = os.path.join(data_dir, "soko.toml")
        if os.path.exists(candidate):
            config_path = candidate
    return load_config(config_path, section_types(specs), data_dir=data_dir)
