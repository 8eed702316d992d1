"""A click group whose subcommands are imported only when used, so ``soko --help`` stays
fast and a service whose optional dependency is missing cannot break the others."""

from __future__ import annotations

import click

from soko.common.service import import_ref


class LazyGroup(click.Group):
    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.lazy:
            return import_ref(self.lazy[name])
        return super().get_command(ctx, name)
