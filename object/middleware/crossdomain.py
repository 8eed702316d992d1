"""``GET /crossdomain.xml`` (Swift's ``crossdomain``): the cross-domain policy Flash,
Silverlight and Java clients fetch before they call the API from a page of another site.
What it allows is ``[proxy] cross_domain_policy`` (Swift's default: every domain)."""

from __future__ import annotations

DEFAULT_POLICY = '<allow-access-from domain="*" secure="false" />'


class CrossDomain:
    def __init__(self, app, section=None):
        self.app = app
        policy = section.cross_domain_policy if section else DEFAULT_POLICY
        self.body = ('<?xml version="1.0"?>\n<!DOCTYPE cross-domain-policy SYSTEM '
                     '"http://www.adobe.com/xml/dtds/cross-domain-policy.dtd" >\n'
                     f"<cross-domain-policy>\n{policy}\n</cross-domain-policy>").encode()

    @classmethod
    def swift_info(cls, section=None) -> dict:
        return {}

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != "/crossdomain.xml" or environ["REQUEST_METHOD"] != "GET":
            return self.app(environ, start_response)
        start_response("200 OK", [("Content-Type", "application/xml"),
                                  ("Content-Length", str(len(self.body)))])
        return [self.body]
