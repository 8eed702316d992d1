"""The service catalog tokens carry: one entry per registered HTTP service.

It is built from the config, not stored: every service registered in ``common/services.py``
whose section is a ``ServerSection`` and says what it is appears, at its advertised endpoint
(``public_url`` if the section has one, else its bind address and port). A service says
what it is in one of two ways, first match wins:

1. ``register_catalog_entry("block", "volumev3", "cinderv3", "/v3/{project_id}")`` at
   import of its ``service.py`` (or anywhere before the identity app is built);
2. class attributes on its config section (``typing.ClassVar``, so they are not config
   keys): ``catalog_type = "volumev3"``, ``catalog_name = "cinderv3"``,
   ``catalog_path = "/v3/{project_id}"``.

Sections named as the well-known soko services (below) need neither. ``{project_id}`` in a
path becomes the token's project id, as Keystone's ``%(project_id)s`` does.
"""

from __future__ import annotations

import dataclasses
import hashlib

from soko.common.config import Config, ServerSection


@dataclasses.dataclass(frozen=True)
class CatalogEntry:
    type: str  # what clients look for: object-store, volumev3, compute, network, identity
    name: str  # the OpenStack service name clients show: swift, cinderv3, nova...
    path: str = ""  # appended to the service's endpoint


WELL_KNOWN: dict[str, CatalogEntry] = {
    "identity": CatalogEntry("identity", "keystone", "/v3"),
    "proxy": CatalogEntry("object-store", "swift", "/v1/AUTH_{project_id}"),
    "object": CatalogEntry("object-store", "swift", "/v1/AUTH_{project_id}"),
    "block": CatalogEntry("volumev3", "cinderv3", "/v3/{project_id}"),
    "compute": CatalogEntry("compute", "nova", "/v2.1"),
    "net": CatalogEntry("network", "neutron", ""),
    "network": CatalogEntry("network", "neutron", ""),
}

_registered: dict[str, CatalogEntry] = {}

INTERFACES = ("public", "internal", "admin")


def register_catalog_entry(section_name: str, type: str, name: str, path: str = "") -> None:
    """Declares how the service configured in ``[section_name]`` appears in the catalog."""
    _registered[section_name] = CatalogEntry(type, name, path)


def entry_for(section_name: str, section: object) -> CatalogEntry | None:
    if section_name in _registered:
        return _registered[section_name]
    kind = getattr(section, "catalog_type", None)
    if isinstance(kind, str) and kind:
        return CatalogEntry(kind, getattr(section, "catalog_name", kind),
                            getattr(section, "catalog_path", ""))
    return WELL_KNOWN.get(section_name)


def build_catalog(config: Config, project_id: str, region: str = "RegionOne") -> list[dict]:
    """Keystone v3's ``token.catalog`` for a token scoped to ``project_id``."""
    from soko.identity.service import advertised_endpoint

    catalog = []
    for section_name, section in sorted(config.sections.items()):
        if not isinstance(section, ServerSection):
            continue
        entry = entry_for(section_name, section)
        if entry is None:
            continue
        url = advertised_endpoint(section) + entry.path.replace("{project_id}", project_id)
        catalog.append({
            "id": stable_id(entry.type, section_name),
            "type": entry.type,
            "name": entry.name,
            "endpoints": [
                {"id": stable_id(entry.type, section_name, interface), "interface": interface,
                 "region": region, "region_id": region, "url": url}
                for interface in INTERFACES
            ],
        })
    return catalog


def stable_id(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:32]
