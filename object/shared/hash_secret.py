"""The cluster's ring hash salt (Swift's ``swift_hash_path_prefix``/``_suffix``).

Ring lookups hash ``prefix + /account/container/object + suffix``: with a secret salt, a
client cannot pick names that all land in one partition. The salt is made once, when the
first bootstrap builds the rings, and kept next to them in ``hash-path-secret.json`` (mode
0600, published with a hard link so it is never overwritten). It must never change: every
object's placement depends on it, so a new salt would orphan all data already stored.

Where the salt comes from, in order:
1. ``hash_path_prefix``/``hash_path_suffix`` in ``[proxy]`` of soko.toml, for clusters that
   spread over several hosts and copy one config everywhere. If the secret file exists
   too, both must agree (an error otherwise: one of them would misplace every object).
2. The secret file next to the rings.
3. Neither: the empty salt. That is what data dirs whose rings were built before the
   secret file existed use, and keep using: a secret is only ever created together with
   new rings, never added to rings that already place data.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from pathlib import Path

from soko.common.config import ConfigError
from soko.common.durable import fsync_dir

SECRET_FILE = "hash-path-secret.json"


def read_secret(ring_dir: Path) -> tuple[str, str] | None:
    """The (prefix, suffix) stored next to the rings, or None if there is no secret file."""
    try:
        stored = json.loads((ring_dir / SECRET_FILE).read_text())
    except FileNotFoundError:
        return None
    return stored["prefix"], stored["suffix"]


def create_secret(ring_dir: Path) -> tuple[str, str]:
    """Makes the secret unless one exists; returns the one in effect. Crash-safe, never
    replaces a secret: the file appears whole (hard link of an fsynced temp) or not at all."""
    salt = (secrets.token_hex(16), secrets.token_hex(16))
    fd, tmp = tempfile.mkstemp(dir=ring_dir, prefix=".tmp-secret-")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"prefix": salt[0], "suffix": salt[1]}, f)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, ring_dir / SECRET_FILE)
        fsync_dir(ring_dir)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return read_secret(ring_dir)


def hash_salt(section, ring_dir: Path) -> tuple[str, str]:
    """The (prefix, suffix) ring lookups use, by the rules in this module's docstring."""
    stored = read_secret(ring_dir)
    configured = (section.hash_path_prefix, section.hash_path_suffix)
    if not any(configured):
        return stored or ("", "")
    if stored is not None and stored != configured:
        raise ConfigError(f"[proxy] hash_path_prefix/hash_path_suffix differ from the "
                          f"cluster's secret in {ring_dir / SECRET_FILE}; changing them "
                          "would misplace every stored object: remove them from soko.toml")
    return configured
