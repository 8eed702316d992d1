"""The Neutron-v2.0-shaped network API: thin falcon resources over the managers.

Every resource has the same two routes (``/v2.0/<plural>`` to list and create,
``/v2.0/<plural>/{id}`` to show, update and delete), so one pair of resource classes
serves them all from a table. Lists take Neutron's filters (``?name=x&network_id=y``, a
repeated key matches any of its values) and ``fields``. Errors carry Neutron's
``NeutronError`` object beside soko's ``error``, so OpenStack clients show the message.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass

import falcon

from soko.common.app import make_base_app
from soko.common.auth import AuthContext, AuthMiddleware, TokenValidator
from soko.common.config import Config
from soko.common.errors import SokoError
from soko.net import views
from soko.net.lookups import (
    FLOATING_IPS,
    NETWORKS,
    PORTS,
    ROUTERS,
    SECURITY_GROUP_RULES,
    SECURITY_GROUPS,
    SUBNETS,
    Finder,
)
from soko.net.manager import NetManager
from soko.net.routers import RouterManager
from soko.net.security_groups import SecurityGroupManager

NEUTRON_TYPES = {400: "BadRequest", 401: "NotAuthorized", 403: "PolicyNotAuthorized",
                 404: "NotFound", 409: "Conflict"}


@dataclass(frozen=True)
class Kind:
    """One Neutron resource: its names, its view, and the manager calls behind it."""

    singular: str
    view: Callable
    list: Callable
    create: Callable
    show: Callable
    update: Callable | None
    delete: Callable
    # What a caller may read of a shown row (Neutron's field policies); None: all of it.
    redact: Callable[[AuthContext, dict], dict] | None = None
    # A service's user may use it too (Neutron's ADMIN_OR_SERVICE): compute binds ports.
    for_services: bool = False

    def shown(self, auth: AuthContext, row) -> dict:
        item = self.view(row)
        return self.redact(auth, item) if self.redact is not None else item

    def policy(self) -> dict:
        if not self.for_services:
            return {}
        return {method: (role, "service") for method, role in (
            ("GET", "reader"), ("POST", "member"), ("PUT", "member"), ("DELETE", "member"))}


def matches(item: dict, params: dict) -> bool:
    for key, wanted in params.items():
        if key == "fields" or key not in item:
            continue
        values = wanted if isinstance(wanted, list) else [wanted]
        shown = item[key]
        shown = json.dumps(shown) if isinstance(shown, bool) else str(shown)
        if shown.lower() not in {v.lower() for v in values}:
            return False
    return True


def only_fields(item: dict, fields) -> dict:
    if not fields:
        return item
    fields = fields if isinstance(fields, list) else [fields]
    return {k: v for k, v in item.items() if k in fields}


class Collection:
    def __init__(self, kind: Kind):
        self.kind = kind
        self.policy = kind.policy()
        self.key = kind.singular + "s"  # the path says security-groups, the body security_groups

    def on_get(self, req, resp) -> None:
        auth = req.context.auth
        items = [self.kind.shown(auth, row) for row in self.kind.list(auth)]
        fields = req.params.get("fields")
        resp.media = {self.key: [only_fields(i, fields) for i in items
                                    if matches(i, req.params)]}

    def on_post(self, req, resp) -> None:
        row = self.kind.create(req.context.auth, req.get_media())
        resp.status = falcon.HTTP_201
        resp.media = {self.kind.singular: self.kind.shown(req.context.auth, row)}


class Item:
    def __init__(self, kind: Kind):
        self.kind = kind
        self.policy = kind.policy()

    def on_get(self, req, resp, item_id: str) -> None:
        item = self.kind.shown(req.context.auth, self.kind.show(req.context.auth, item_id))
        resp.media = {self.kind.singular: only_fields(item, req.params.get("fields"))}

    def on_put(self, req, resp, item_id: str) -> None:
        if self.kind.update is None:
            raise falcon.HTTPMethodNotAllowed(["GET", "DELETE"])
        row = self.kind.update(req.context.auth, item_id, req.get_media())
        resp.media = {self.kind.singular: self.kind.shown(req.context.auth, row)}

    def on_delete(self, req, resp, item_id: str) -> None:
        self.kind.delete(req.context.auth, item_id)
        resp.status = falcon.HTTP_204


class RouterInterface:
    """``PUT /v2.0/routers/{id}/add_router_interface`` and ``.../remove_router_interface``."""

    def __init__(self, action: Callable):
        self.action = action

    def on_put(self, req, resp, item_id: str) -> None:
        resp.media = self.action(req.context.auth, item_id, req.get_media())


class Versions:
    public = True

    def on_get(self, req, resp) -> None:
        resp.media = {"versions": [{"id": "v2.0", "status": "CURRENT", "links": [
            {"rel": "self", "href": f"{req.prefix}/v2.0/"}]}]}


class Extensions:
    """``GET /v2.0/extensions``: what clients probe before using a feature."""

    ALIASES = ("router", "external-net", "security-group", "port-security",
               "standard-attr-description", "ext-gw-mode")

    def on_get(self, req, resp) -> None:
        resp.media = {"extensions": [{"alias": a, "name": a, "description": "",
                                      "links": [], "updated": "2026-01-01T00:00:00Z"}
                                     for a in self.ALIASES]}


def handle_error(req, resp, exc: SokoError, params) -> None:
    resp.status = exc.status
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps({
        "NeutronError": {"type": NEUTRON_TYPES.get(exc.status, exc.title.replace(" ", "")),
                         "message": exc.message, "detail": ""},
        "error": {"code": exc.status, "title": exc.title, "message": exc.message,
                  "trans_id": getattr(req.context, "trans_id", None)}})


def kinds(nets: NetManager, routers: RouterManager,
          groups: SecurityGroupManager) -> dict[str, Kind]:
    plugging = getattr(nets.agent, "driver", None)  # None: an agent without a host (tests)

    def delete_port(auth, port_id):
        nets.delete_port(auth, port_id, routers.release_port)

    def listed(finder: Finder) -> Callable:
        return functools.partial(finder.list, nets.sessions)

    def shown(finder: Finder) -> Callable:
        return functools.partial(finder.get, nets.sessions)

    return {
        "networks": Kind("network", views.network_view, listed(NETWORKS),
                         nets.create_network, shown(NETWORKS), nets.update_network,
                         nets.delete_network),
        "subnets": Kind("subnet", views.subnet_view, listed(SUBNETS), nets.create_subnet,
                        shown(SUBNETS), nets.update_subnet, nets.delete_subnet),
        "ports": Kind("port", functools.partial(views.port_view, plugging=plugging),
                      listed(PORTS), nets.create_port,
                      shown(PORTS), nets.update_port, delete_port,
                      redact=views.port_for, for_services=True),
        "routers": Kind("router", views.router_view, listed(ROUTERS),
                        routers.create_router, shown(ROUTERS), routers.update_router,
                        routers.delete_router),
        "floatingips": Kind("floatingip", views.floating_ip_view, listed(FLOATING_IPS),
                            routers.create_floating_ip, shown(FLOATING_IPS),
                            routers.update_floating_ip, routers.delete_floating_ip),
        "security-groups": Kind("security_group", views.security_group_view,
                                groups.list_groups, groups.create_group,
                                shown(SECURITY_GROUPS), groups.update_group,
                                groups.delete_group),
        "security-group-rules": Kind("security_group_rule", views.security_group_rule_view,
                                     groups.list_rules, groups.create_rule,
                                     shown(SECURITY_GROUP_RULES), None, groups.delete_rule),
    }


def make_app(config: Config, *, validator: TokenValidator | None = None,
             manager: NetManager | None = None) -> falcon.App:
    """The network API. Tests may inject ``validator`` and ``manager`` (with an agent of
    their choosing); production builds both from config and reconciles the host first."""
    if validator is None:
        from soko.identity.tokens import FernetTokenValidator

        validator = FernetTokenValidator.from_config(config)
    if manager is None:
        from soko.net import wiring

        manager = wiring.make_manager(config)
        wiring.start(config, manager)
    routers = RouterManager(manager)
    groups = SecurityGroupManager(sessions=manager.sessions, agent=manager.agent)
    app = make_base_app(middleware=[AuthMiddleware(validator)])
    app.add_error_handler(SokoError, handle_error)
    app.add_route("/", Versions())
    for plural, kind in kinds(manager, routers, groups).items():
        app.add_route(f"/v2.0/{plural}", Collection(kind))
        app.add_route(f"/v2.0/{plural}/{{item_id}}", Item(kind))
    app.add_route("/v2.0/routers/{item_id}/add_router_interface",
                  RouterInterface(routers.add_interface))
    app.add_route("/v2.0/routers/{item_id}/remove_router_interface",
                  RouterInterface(routers.remove_interface))
    app.add_route("/v2.0/extensions", Extensions())
    return app
