"""The options every API command group takes: where to connect and as whom.

One definition, so ``soko volume``, ``soko image``, ``soko server`` and ``soko flavor`` log
in the same way (openrc's ``OS_*`` variables, a token, or the all-in-one's saved admin
credentials in the data dir).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import click


def login_options(client_class: type, url_env: str, url_help: str):
    """A decorator for a click group: adds the options and puts a ``client_class`` in
    ``ctx.obj``, built as ``client_class(url, token, data_dir, password_login)``."""
    options = [
        click.option("--os-url", envvar=url_env, help=f"{url_help} (${url_env})."),
        click.option("--os-token", envvar="OS_TOKEN", help="A token ($OS_TOKEN)."),
        click.option("--os-auth-url", envvar="OS_AUTH_URL", help="Identity endpoint ($OS_AUTH_URL)."),
        click.option("--os-username", envvar="OS_USERNAME", help="($OS_USERNAME)"),
        click.option("--os-password", envvar="OS_PASSWORD", help="($OS_PASSWORD)"),
        click.option("--os-project-name", envvar="OS_PROJECT_NAME", help="($OS_PROJECT_NAME)"),
        click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                     default=lambda: os.environ.get("SOKO_DATA_DIR", ".soko"),
                     show_default=".soko",
                     help="The all-in-one's data dir (saved admin credentials, soko.toml)."),
    ]

    def decorate(group):
        @functools.wraps(group)
        def build(ctx, os_url, os_token, os_auth_url, os_username, os_password,
                  os_project_name, data_dir):
            ctx.obj = client_class(os_url, os_token, data_dir.absolute(), dict(
                auth_url=os_auth_url, username=os_username, password=os_password,
                project_name=os_project_name))
        for option in reversed(options):
            build = option(build)
        return click.pass_context(build)

    return decorate
