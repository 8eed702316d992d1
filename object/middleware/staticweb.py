"""Static web sites from containers (Swift's ``staticweb``).

A container's metadata makes it a site for browsers (anonymous callers, or anyone who sends
``X-Web-Mode: true``); everyone else sees the plain API:

- ``X-Container-Meta-Web-Index: index.html``: ``/c/`` and ``/c/dir/`` serve that object
  of the directory (``/c`` and ``/c/dir`` are redirected to them with a slash);
- ``X-Container-Meta-Web-Listings: true``: a directory without an index is listed in HTML
  (``-Web-Listings-CSS``: a style sheet for it, ``-Web-Listings-Label``: the title
  instead of the path);
- ``X-Container-Meta-Web-Error: error.html``: an error answer carries the body of the
  object ``<status>error.html`` (``404error.html``) if there is one;
- an object of type ``application/directory`` (``-Web-Directory-Type``: another type), of
  at most one byte, marks a directory and is served as one.

Every read is a sub-request as the caller, so the container's ACL decides as for any read:
a public site is ``X-Container-Read: .r:*`` (objects), listings need ``.rlistings`` too.
Only the container's web settings are read whatever the caller may read (as Swift's
``get_container_info``), to know how to answer.
"""

from __future__ import annotations

import html
import json
from urllib.parse import quote

from soko.common.auth import AUTH_ENVIRON_KEY
from soko.object.middleware.subrequest import (
    Answer,
    call,
    from_wsgi,
    request_path,
    subrequest,
)
from soko.object.proxy.access import INFO_READ_KEY
from soko.object.proxy.swift_errors import swift_page

HTML = "text/html; charset=UTF-8"
DIRECTORY_TYPE = "application/directory"
MOVED = b"<html><h1>Moved Permanently</h1><p>The resource has moved permanently.</p></html>"
WEB_META = "x-container-meta-web-"
STYLE = ("  <style type=\"text/css\">\n"
         "   h1 {font-size: 1em; font-weight: bold;}\n"
         "   th {text-align: left; padding: 0px 1em 0px 1em;}\n"
         "   td {padding: 0px 1em 0px 1em;}\n"
         "   a {text-decoration: none;}\n"
         "  </style>\n")
DISABLED_STYLE = ("  <style type=\"text/css\">\n"
                  "   h1 {font-size: 1em; font-weight: bold;}\n"
                  "   p {font-size: 2}\n"
                  "  </style>\n")
EMPTY_CELLS = ('    <td class="colsize">&nbsp;</td>\n'
               '    <td class="coldate">&nbsp;</td>\n'
               '   </tr>\n')


def is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes", "on", "t", "y")


def is_shown(answer: Answer) -> bool:
    """Success or redirection: served as it is."""
    return 200 <= answer.status < 400


def human_size(size: int) -> str:
    """Sizes as Swift's listings show them: bytes, then ``5Ki``, ``3Mi`` (rounded)."""
    value, index = float(size), -1
    while value >= 1024 and index < 7:
        value, index = round(value / 1024), index + 1
    return f"{int(value)}" if index < 0 else f"{round(value)}{'KMGTPEZY'[index]}i"


def answer_with(start_response, status: str, headers: list, body: bytes, method: str):
    start_response(status, [*headers, ("Content-Length", str(len(body)))])
    return [] if method == "HEAD" else [body]


class Site:
    """One browser request on a container: its web settings, and the answers built from
    them."""

    def __init__(self, app, environ: dict, version: str, account: str, container: str):
        self.app, self.environ = app, environ
        self.method = environ["REQUEST_METHOD"]
        self.container_url = f"/{version}/{account}/{container}"
        settings = subrequest(app, {**environ, INFO_READ_KEY: True}, "HEAD",
                              self.container_url, source="SW")
        settings.close()
        meta = {k[len(WEB_META):]: v.strip() for k, v in settings.headers.items()
                if k.startswith(WEB_META)} if is_shown(settings) else {}
        self.index, self.error = meta.get("index", ""), meta.get("error", "")
        self.listings, self.css = meta.get("listings", ""), meta.get("listings-css", "")
        self.label = meta.get("listings-label", "")
        self.directory_type = meta.get("directory-type", "") or DIRECTORY_TYPE

    def read(self, path: str, method: str | None = None) -> Answer:
        return subrequest(self.app, self.environ, method or self.method, path, source="SW")

    def error_answer(self, start_response, answer: Answer):
        """``answer`` (an error), with the body of ``<status><Web-Error>`` if it exists."""
        if self.error:
            page = self.read(f"{self.container_url}/{answer.status}{self.error}", "GET")
            if page.status // 100 == 2:
                answer.close()
                start_response(answer.status_line, page.header_list)
                if self.method == "HEAD":
                    page.close()
                    return []
                return page
            page.close()
        start_response(answer.status_line, answer.header_list)
        if self.method == "HEAD":
            answer.close()
            return []
        return answer

    def not_found(self, start_response, body: str | None = None):
        page = (body or swift_page(404)).encode()
        answer = Answer("404 Not Found", [("Content-Type", HTML),
                                          ("Content-Length", str(len(page)))], [page])
        return self.error_answer(start_response, answer)

    def redirect_with_slash(self, start_response):
        environ = self.environ
        location = quote(from_wsgi(environ["PATH_INFO"]) + "/")
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
        return answer_with(start_response, "301 Moved Permanently",
                           [("Content-Type", HTML),
                            ("Location", f"{environ['wsgi.url_scheme']}://{host}{location}")],
                           MOVED, self.method)

    def css_href(self, prefix: str) -> str:
        if self.css.startswith(("/", "http://", "https://")):
            return quote(self.css, ":/")
        return "../" * prefix.count("/") + quote(self.css)

    def title(self) -> str:
        path = from_wsgi(self.environ["PATH_INFO"])
        if self.label:
            return f"{self.label}/{'/'.join(path.split('/')[4:])}"
        return path

    def listing(self, start_response, prefix: str = ""):
        """The HTML listing of the directory ``prefix`` (``""``: the container's top)."""
        title = html.escape(self.title())
        link = (f'  <link rel="stylesheet" type="text/css" href="{self.css_href(prefix)}" />\n'
                if self.css else None)
        if not is_true(self.listings):
            body = ("<!DOCTYPE html>\n<html>\n<head>\n"
                    f"<title>Listing of {title}</title>\n{link or DISABLED_STYLE}</head>\n"
                    "<body>  <h1>Web Listing Disabled</h1>   <p>The owner of this web site "
                    "has disabled web listing.   <p>If you are the owner of this web site, you "
                    "can enable   web listing by setting X-Container-Meta-Web-Listings.</p>")
            if self.index:
                body += ("<h1>Index File Not Found</h1> <p>The owner of this web site has set "
                         f" <b>X-Container-Meta-Web-Index: {self.index}</b>.  However, this "
                         "file is not found.</p>")
            return self.not_found(start_response, body + " </body>\n</html>\n")
        query = "format=json&delimiter=/" + (f"&prefix={quote(prefix)}" if prefix else "")
        answer = subrequest(self.app, self.environ, "GET", self.container_url, query=query,
                            source="SW")
        if answer.status // 100 != 2:
            return self.error_answer(start_response, answer)
        entries = json.loads(b"".join(answer) or b"[]")
        if prefix and not entries:
            return self.not_found(start_response)
        rows = []
        if prefix:
            rows.append('   <tr id="parent" class="item">\n'
                        '    <td class="colname"><a href="../">../</a></td>\n' + EMPTY_CELLS)
        for entry in entries:
            if "subdir" in entry:
                name = entry["subdir"][len(prefix):]
                rows.append('   <tr class="item subdir">\n'
                            f'    <td class="colname"><a href="./{link_path(name)}">'
                            f'{html.escape(name)}</a></td>\n' + EMPTY_CELLS)
        for entry in entries:
            if "name" in entry:
                name = entry["name"][len(prefix):]
                kinds = " ".join("type-" + html.escape(part.lower())
                                 for part in entry["content_type"].split("/"))
                date = html.escape(entry["last_modified"]).split(".")[0].replace("T", " ")
                rows.append(f'   <tr class="item {kinds}">\n'
                            f'    <td class="colname"><a href="./{link_path(name)}">'
                            f'{html.escape(name)}</a></td>\n'
                            f'    <td class="colsize">{human_size(entry["bytes"])}</td>\n'
                            f'    <td class="coldate">{date}</td>\n   </tr>\n')
        body = ("<!DOCTYPE html>\n<html>\n <head>\n"
                f"  <title>Listing of {title}</title>\n{link or STYLE} </head>\n <body>\n"
                f'  <h1 id="title">Listing of {title}</h1>\n  <table id="listing">\n'
                '   <tr id="heading">\n    <th class="colname">Name</th>\n'
                '    <th class="colsize">Size</th>\n    <th class="coldate">Date</th>\n'
                "   </tr>\n" + "".join(rows) + "  </table>\n </body>\n</html>\n")
        return answer_with(start_response, "200 OK", [("Content-Type", HTML)], body.encode(),
                           self.method)

    def container(self, start_response, web_mode: bool):
        """``/c`` or ``/c/``: the index, else the listing, if the caller may read here."""
        allowed = self.read(self.container_url, "HEAD")
        allowed.close()
        if allowed.status // 100 != 2:  # answered with the page a GET gets
            page = swift_page(allowed.status).encode()
            headers = [(k, v) for k, v in allowed.header_list if k.lower() != "content-length"]
            return self.error_answer(start_response, Answer(
                allowed.status_line, [*headers, ("Content-Length", str(len(page)))], [page]))
        if not self.listings and not self.index:
            if web_mode:
                return answer_with(start_response, "404 Not Found", [("Content-Type", HTML)],
                                   swift_page(404).encode(), self.method)
            return self.app(self.environ, start_response)
        if not self.environ["PATH_INFO"].endswith("/"):
            return self.redirect_with_slash(start_response)
        if not self.index:
            return self.listing(start_response)
        return self.index_or_listing(start_response, from_wsgi(self.environ["PATH_INFO"]), "")

    def index_or_listing(self, start_response, directory: str, prefix: str):
        index = self.read(directory + self.index)
        if index.status == 404:
            index.close()
            return self.listing(start_response, prefix)
        if not is_shown(index):
            return self.error_answer(start_response, index)
        start_response(index.status_line, index.header_list)
        return index

    def object(self, start_response, answer: Answer, obj: str):
        """``/c/path``: the object, unless it is missing or a directory marker; then the
        directory's index or listing (``/c/dir``: redirected to ``/c/dir/`` first)."""
        if is_shown(answer):
            length = answer.headers.get("content-length", "0")
            if answer.headers.get("content-type") != self.directory_type or (
                    length.isdigit() and int(length) > 1):
                start_response(answer.status_line, answer.header_list)
                return answer
        elif answer.status != 404:
            start_response(answer.status_line, answer.header_list)
            return answer
        if not self.listings and not self.index:
            start_response(answer.status_line, answer.header_list)
            return answer
        answer.close()
        path = from_wsgi(self.environ["PATH_INFO"])
        slash = path.endswith("/")
        if self.index:
            index = self.read(path + ("" if slash else "/") + self.index)
            if is_shown(index):
                if not slash:
                    index.close()
                    return self.redirect_with_slash(start_response)
                start_response(index.status_line, index.header_list)
                return index
            index.close()
        if slash:
            return self.listing(start_response, obj)
        below = subrequest(self.app, self.environ, "GET", self.container_url,
                           query=f"format=json&limit=1&delimiter=/&prefix={quote(obj + '/')}",
                           source="SW")
        if below.status // 100 != 2 or not json.loads(b"".join(below) or b"[]"):
            return self.not_found(start_response)
        return self.redirect_with_slash(start_response)


def link_path(name: str) -> str:
    """A listed name as a relative link (dots escaped, as Swift's, so ``..`` stays a name)."""
    return quote(name).replace(".", "%2E")


def web_request(environ: dict) -> tuple[str, str, str, str] | None:
    """``(version, account, container, object)`` of a browser's read of a container or an
    object (object ``""`` for the container), None for any other request."""
    if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
        return None
    if environ.get(AUTH_ENVIRON_KEY) is not None and not is_true(
            environ.get("HTTP_X_WEB_MODE")):
        return None
    path = request_path(environ)
    return path if path and path[2] else None


class StaticWeb:
    def __init__(self, app, section=None):
        self.app = app

    @classmethod
    def swift_info(cls, section=None) -> dict:
        return {}

    def __call__(self, environ, start_response):
        request = web_request(environ)
        if request is None:
            return self.app(environ, start_response)
        version, account, container, obj = request
        if not obj:
            site = Site(self.app, environ, version, account, container)
            return site.container(start_response, is_true(environ.get("HTTP_X_WEB_MODE")))
        answer = call(self.app, dict(environ, **{"swift.source": "SW"}))
        length = answer.headers.get("content-length", "")
        if is_shown(answer) and length.isdigit() and int(length) > 1:
            start_response(answer.status_line, answer.header_list)  # never a directory
            return answer
        site = Site(self.app, environ, version, account, container)
        return site.object(start_response, answer, obj)

