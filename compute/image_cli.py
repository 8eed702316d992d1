"""``soko image ...``: images for instances. For now, building the small self-booting test
guest; uploading images into the object store comes with the compute service."""

from __future__ import annotations

import click

from soko.tools.guest_image import build_test_guest


@click.group()
def image() -> None:
    """Images for instances."""


image.add_command(build_test_guest)
