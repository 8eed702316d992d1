"""Container quotas (Swift's ``container_quotas``): ``X-Container-Meta-Quota-Bytes`` and
``X-Container-Meta-Quota-Count`` cap what the container holds. Whoever may set the
container's metadata sets them (whole numbers, else 400 and nothing changed); an object
write that would take the container over either is refused with 413 and nothing stored
(``quota_writes`` says what a write counts)."""

from __future__ import annotations

from soko.common.errors import BadRequest
from soko.object.middleware.quota_writes import HTML, Usage, exceeds, refuse, upload_of
from soko.object.middleware.subrequest import request_path

QUOTAS = {"HTTP_X_CONTAINER_META_QUOTA_BYTES": "Invalid bytes quota.",
          "HTTP_X_CONTAINER_META_QUOTA_COUNT": "Invalid count quota."}


class ContainerQuotas:
    def __init__(self, app, section=None):
        self.app = app
        self.usage = Usage(app, ("x-container-meta-quota-bytes", "x-container-meta-quota-count"),
                           section.container_info_ttl if section else 5.0)

    @classmethod
    def swift_info(cls, section=None) -> dict:
        return {}

    def __call__(self, environ, start_response):
        path = request_path(environ)
        if path and path[2] and not path[3] and environ["REQUEST_METHOD"] in ("PUT", "POST"):
            for key, message in QUOTAS.items():
                value = environ.get(key)
                if value and not (value.isascii() and value.isdigit()):
                    raise BadRequest(message, content_type=HTML)
            self.usage.forget("/{}/{}/{}".format(*path))
            return self.app(environ, start_response)
        upload = upload_of(self.app, environ)
        if upload is not None:
            headers = self.usage.read(
                environ, f"/{upload.version}/{upload.account}/{upload.container}")
            if headers is not None and (
                    exceeds(headers.get("x-container-meta-quota-bytes"),
                            headers.get("x-container-bytes-used"), upload.size)
                    or exceeds(headers.get("x-container-meta-quota-count"),
                               headers.get("x-container-object-count"), 1)):
                refuse(environ, upload)
        return self.app(environ, start_response)
