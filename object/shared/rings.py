"""The cluster's three rings (account, container, object), salted with its hash secret.

The proxy, the daemons, the CLI and the benches all place data by these same rings.
"""

from __future__ import annotations

from soko.common.config import Config
from soko.object.shared.hash_secret import hash_salt
from soko.ring.ring import Ring


def load_rings(config: Config) -> dict:
    section = config.section("proxy")
    directory = section.rings_dir(config.data_dir)
    prefix, suffix = hash_salt(section, directory)
    return {name: Ring(directory / f"{name}.ring", hash_prefix=prefix, hash_suffix=suffix)
            for name in ("account", "container", "object")}
