"""The ring hash salt: made once with new rings, private, never replaced; old data dirs
without one keep their placement; a soko.toml salt that contradicts the file is refused."""

from __future__ import annotations

import json
import stat

import pytest

from soko.common.config import Config, ConfigError
from soko.object.allinone import ensure_rings
from soko.object.node.service import StorageSection
from soko.object.proxy.service import ProxySection
from soko.object.shared.hash_secret import SECRET_FILE, create_secret, hash_salt
from soko.object.shared.rings import load_rings
from soko.ring.builder import build_rings
from soko.ring.ring import Ring

NAMES = [("AUTH_demo", "photos", f"img-{i}.jpg") for i in range(64)]


def config(data_dir, **proxy) -> Config:
    return Config(data_dir=data_dir, sections={
        "proxy": ProxySection(**proxy), "storage": StorageSection(mount_check=False)})


def placements(ring: Ring) -> list[int]:
    return [ring.get_nodes(*name)[0] for name in NAMES]


def test_first_bootstrap_salts_the_rings_once(tmp_path):
    cfg = config(tmp_path)
    ensure_rings(cfg)
    ring_dir = tmp_path / "object" / "rings"
    secret = ring_dir / SECRET_FILE
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    stored = json.loads(secret.read_text())
    assert len(stored["prefix"]) == len(stored["suffix"]) == 32
    salted = load_rings(cfg)["object"]
    plain = Ring(ring_dir / "object.ring")
    assert placements(salted) != placements(plain)
    assert placements(salted) == placements(
        Ring(ring_dir / "object.ring", hash_prefix=stored["prefix"], hash_suffix=stored["suffix"]))
    # Later starts (and a second create) keep the secret: placement never moves.
    ensure_rings(cfg)
    assert create_secret(ring_dir) == (stored["prefix"], stored["suffix"])
    assert json.loads(secret.read_text()) == stored
    assert placements(load_rings(cfg)["object"]) == placements(salted)
    assert sorted(p.name for p in ring_dir.iterdir() if p.name.startswith(".tmp")) == []


def test_rings_from_before_the_secret_keep_their_placement(tmp_path):
    cfg = config(tmp_path)
    ring_dir = tmp_path / "object" / "rings"
    from soko.object.allinone import ring_devices

    build_rings(ring_dir, ring_devices(cfg.section("storage")))  # an older soko's data dir
    ensure_rings(cfg)
    assert not (ring_dir / SECRET_FILE).exists()
    assert placements(load_rings(cfg)["object"]) == placements(Ring(ring_dir / "object.ring"))


def test_configured_salt_must_agree_with_the_file(tmp_path):
    ring_dir = tmp_path
    assert hash_salt(ProxySection(hash_path_suffix="s"), ring_dir) == ("", "s")
    prefix, suffix = create_secret(ring_dir)
    assert hash_salt(ProxySection(), ring_dir) == (prefix, suffix)
    same = ProxySection(hash_path_prefix=prefix, hash_path_suffix=suffix)
    assert hash_salt(same, ring_dir) == (prefix, suffix)
    with pytest.raises(ConfigError, match="misplace every stored object"):
        hash_salt(ProxySection(hash_path_suffix="other"), ring_dir)
