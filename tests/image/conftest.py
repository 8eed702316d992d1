"""Image fixtures: the test guest image, built once per session, and the image stack (an
object cluster, identity and ``soko serve image``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.image.image_stack import image_stack  # noqa: F401 (images: cluster + soko-image)
from tests.support import require_tools


@pytest.fixture(scope="session")
def guest_image(tmp_path_factory) -> Path:
    """The test guest, built once per session (the package cache makes rebuilds quick)."""
    require_tools("apt-get", "dpkg-deb", "mkfs.ext4", "mount", "ldd")
    from soko.image import guest_builder as guest_image

    out = tmp_path_factory.mktemp("guest") / "guest.img"
    guest_image.build(out, size_mib=64)
    return out
