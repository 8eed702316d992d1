"""What a soko service declares about itself, so the CLI, ``soko serve`` and ``soko up``
learn every service from one place and nothing is hard-wired twice.

A service package exposes a ``SERVICE = ServiceSpec(...)`` in a module that imports only
its config dataclass (cheap to import); ``soko.common.services`` lists those modules.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from typing import Any

from soko.common.config import Config


def import_ref(ref: str) -> Any:
    """Imports ``"package.module:attribute"``."""
    module_name, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module_name), attr)


@dataclasses.dataclass(frozen=True)
class Unit:
    """One process ``soko up`` runs and watches: a service instance or a daemon."""

    name: str
    argv: list[str]
    endpoint: str | None = None  # shown to the user; its /healthcheck must answer 200
    health_url: str | None = None


@dataclasses.dataclass(frozen=True)
class ServiceSpec:
    """A service: its config section, how to build its WSGI app, and how ``soko up`` runs it.

    ``app_factory`` is ``"module:make_app"``, called as ``make_app(config)``.
    ``bootstrap`` (optional) is ``"module:function"``, called as ``function(config)`` by
    ``soko up`` before the first start; it may return lines to print (credentials, rings).
    ``units`` (optional) is ``"module:function"`` returning the processes to run, for a
    service that runs more than one (storage nodes, daemons); by default, one gunicorn.
    ``teardown`` (optional) is ``"module:function"``, called as ``function(config)`` after
    ``soko up`` stopped the units: it undoes what bootstrap set up on the host (mounts,
    loop devices) so a stopped all-in-one leaves nothing behind.
    ``main`` (instead of ``app_factory``) is ``"module:function"`` for a service that is not
    an HTTP app (background daemons): ``soko serve`` calls ``function(config, log_level)``.
    """

    name: str
    summary: str
    section: type  # a dataclass; HTTP services extend ServerSection (its default port is theirs)
    app_factory: str | None = None
    bootstrap: str | None = None
    units: str | None = None
    teardown: str | None = None
    main: str | None = None

    def make_app(self, config: Config):
        return import_ref(self.app_factory)(config)

    def run_bootstrap(self, config: Config) -> list[str]:
        if self.bootstrap is None:
            return []
        return list(import_ref(self.bootstrap)(config) or [])

    def run_teardown(self, config: Config) -> None:
        if self.teardown is not None:
            import_ref(self.teardown)(config)

    def list_units(self, config: Config) -> list[Unit]:
        if self.units is not None:
            return import_ref(self.units)(config)
        server = config.section(self.name)
        endpoint = server.endpoint
        return [
            Unit(
                name=self.name,
                argv=serve_argv(self.name, config),
                endpoint=endpoint,
                health_url=f"{endpoint}/healthcheck",
            )
        ]


def serve_argv(name: str, config: Config, *extra: str) -> list[str]:
    """The command line that serves one service under gunicorn (``soko serve NAME``)."""
    argv = [sys.executable, "-m", "soko.tools.cli", "serve", name]
    if config.path is not None:
        argv += ["--config", str(config.path)]
    return argv + ["--data-dir", str(config.data_dir), *extra]

