"""FormPost: a browser's ``multipart/form-data`` POST to ``/v1/<account>/<container>[/<prefix>]``
stores each file of the form as ``<prefix><filename>``, without a token, as Swift's
``formpost`` does.

The form's fields before its files say what it may do, signed with a TempURL key
(``signatures.py``): ``<path>\\n<redirect>\\n<max_file_size>\\n<max_file_count>\\n<expires>``.
Fields after a file apply to the files after it (the form is read as it arrives, never held
whole; Swift ignores them alike). Each file is a PUT streamed through as the key's
(``access.SignedGrant``), cut off, and so not stored, past ``max_file_size``. The answer is
the last PUT's status (``201 Created``), or with a ``redirect`` field a 303 to it with
``status`` and ``message`` in its query. Files stored before a refused one stay, as in Swift.
"""

from __future__ import annotations

import time
from urllib.parse import quote

from soko.common.errors import ClientDisconnect
from soko.object.middleware.form_parts import BadPart, FormParts, InvalidStart, parse_parameters
from soko.object.middleware.signatures import (
    act_under,
    digests_info,
    matching_key,
    parse_signature,
    signing_keys,
    text_answer,
    unauthorized,
)
from soko.object.middleware.subrequest import from_wsgi, subrequest
from soko.object.proxy.access import SignedGrant

MAX_VALUE_LENGTH = 4096  # a field's value; Swift cuts longer ones there
# The fields a form's files are stored by; others are read past and forgotten (so a form
# of a million fields holds no more than these).
FIELDS = frozenset({"redirect", "max_file_size", "max_file_count", "expires", "signature",
                    "x_delete_at", "x_delete_after", "content-type", "content-encoding"})
PLAIN = "text/plain"
ANSWER_BODY_LIMIT = 64 * 1024
VERSIONS = ("v1", "v1.0")


class FormInvalid(Exception):
    """A 400 ``FormPost: <message>``."""


class FormUnauthorized(Exception):
    """A 401 ``FormPost: <Message>``."""


def whole_number(attributes: dict[str, str], name: str, error: str) -> int | None:
    try:
        return int(attributes[name]) if attributes.get(name) else None
    except ValueError:
        raise FormInvalid(error) from None


class CappedBody:
    """A file's bytes for its PUT; past ``limit`` the PUT is cut off (``exceeded``)."""

    def __init__(self, form: FormParts, limit: int):
        self.form, self.limit = form, limit
        self.received = 0
        self.exceeded = False

    def __iter__(self):
        while chunk := self.form.read():
            self.received += len(chunk)
            if self.received > self.limit:
                self.exceeded = True
                raise ClientDisconnect("max_file_size exceeded")
            yield chunk


class FormPost:
    def __init__(self, app, section):
        self.app = app
        self.digests = frozenset(section.allowed_digests)

    @classmethod
    def swift_info(cls, section) -> dict:
        return digests_info(section)

    def __call__(self, environ, start_response):
        kind, params = parse_parameters(environ.get("CONTENT_TYPE") or "")
        if environ["REQUEST_METHOD"] != "POST" or kind != "multipart/form-data" \
                or not params.get("boundary"):
            return self.app(environ, start_response)
        environ["HTTP_USER_AGENT"] = f"{environ.get('HTTP_USER_AGENT', '')} FormPost".strip()
        form = FormParts(environ["wsgi.input"], params["boundary"].encode("latin-1"))
        try:
            status, headers, body = self.translate(environ, form)
        except InvalidStart:
            return text_answer(environ, start_response, "400 Bad Request",
                               "FormPost: invalid starting boundary", content_type=PLAIN)
        except (FormInvalid, BadPart) as error:
            return text_answer(environ, start_response, "400 Bad Request",
                               f"FormPost: {error}", content_type=PLAIN)
        except FormUnauthorized as error:
            return unauthorized(environ, start_response, f"FormPost: {str(error).title()}")
        start_response(status, headers)
        return [body]

    def translate(self, environ: dict, form: FormParts) -> tuple[str, list, bytes]:
        """Stores the form's files in turn; its answer (status line, headers, body)."""
        attributes: dict[str, str] = {}
        status = message = ""
        answer_body = b""
        cors: list[tuple[str, str]] = []
        keys = None
        count = 0
        for headers in form:
            disposition, params = parse_parameters(headers.get("content-disposition", ""))
            if disposition != "form-data" or not params.get("filename"):
                value = b""
                while len(value) < MAX_VALUE_LENGTH and (
                        chunk := form.read(MAX_VALUE_LENGTH - len(value))):
                    value += chunk
                if params.get("name", "").lower() in FIELDS:
                    try:
                        attributes[params["name"].lower()] = value.decode().rstrip("\r\n-")
                    except UnicodeDecodeError:
                        raise FormInvalid(f"{params['name']} is not UTF-8") from None
                continue
            count += 1
            if count > (whole_number(attributes, "max_file_count",
                                     "max_file_count not an integer") or 0):
                status, message = "400 Bad Request", "max file count exceeded"
                break
            file_attributes = {**attributes, "filename": params["filename"]}
            for name in ("content-type", "content-encoding"):
                if name not in attributes and name in headers:
                    file_attributes[name] = headers[name]
            if keys is None:
                keys = self.keys(environ)
            status, cors, answer_body = self.store(environ, form, file_attributes, keys)
            if not status.startswith("2"):
                break
        if not status:
            status, message = "400 Bad Request", "no files to process"
        # A refused file's form is not read to its end (a 303 says nothing of that).
        close = [] if status.startswith("2") else [("Connection", "close")]
        redirect = attributes.get("redirect")
        if not redirect:
            body = (status + (f"\r\nFormPost: {message.title()}" if message else "")).encode()
            if not status.startswith("2") and answer_body:
                body = answer_body
            return status, [*cors, ("Content-Type", PLAIN),
                            ("Content-Length", str(len(body))), *close], body
        redirect += ("&" if "?" in redirect else "?") + \
            f"status={quote(status.split(' ', 1)[0])}&message={quote(message)}"
        body = f'<html><body><p><a href="{redirect}">Click to continue...</a></p></body></html>'
        return "303 See Other", [*cors, ("Location", redirect),
                                 ("Content-Length", str(len(body))), *close], body.encode()

    def keys(self, environ: dict) -> list:
        """The keys of the account and container the form posts to (none if it names
        none)."""
        parts = path_text(environ).split("/", 4)
        if len(parts) < 4 or parts[0] or parts[1] not in VERSIONS or not parts[2] \
                or not parts[3]:
            return []
        return list(signing_keys(self.app, environ, parts[2], parts[3], "FP"))

    def store(self, environ: dict, form: FormParts, attributes: dict[str, str],
              keys: list) -> tuple[str, list[tuple[str, str]], bytes]:
        """One file's PUT if the form's signature holds: its status line, its CORS headers
        (the form's ``Origin`` is the PUT's, as a browser's cross-origin upload needs), and
        its body."""
        if not keys:
            raise FormUnauthorized("invalid signature")
        max_file_size = whole_number(attributes, "max_file_size",
                                     "max_file_size not an integer") or 0
        headers = {}
        for field, header, error in (
                ("x_delete_at", "X-Delete-At", "x_delete_at not an integer: Unix timestamp "
                                               "required."),
                ("x_delete_after", "X-Delete-After", "x_delete_after not an integer: Number "
                                                     "of seconds required.")):
            if field in attributes:
                try:
                    headers[header] = str(int(attributes[field]))
                except ValueError:
                    raise FormInvalid(error) from None
        if "content-type" in attributes:
            headers["Content-Type"] = attributes["content-type"] or "application/octet-stream"
        if "content-encoding" in attributes:
            headers["Content-Encoding"] = attributes["content-encoding"]
        if environ.get("HTTP_ORIGIN"):
            headers["Origin"] = from_wsgi(environ["HTTP_ORIGIN"])
        if (whole_number(attributes, "expires", "expired not an integer") or 0) < time.time():
            raise FormUnauthorized("form expired")
        path = path_text(environ)
        message = "\n".join([path, attributes.get("redirect") or "",
                             *(attributes.get(name) or "0" for name in
                               ("max_file_size", "max_file_count", "expires"))])
        try:
            digest, signature = parse_signature(attributes.get("signature", ""))
        except ValueError:
            raise FormUnauthorized("invalid signature") from None
        key = matching_key(keys, [message], digest, signature) \
            if digest in self.digests else None
        if key is None:
            raise FormUnauthorized("invalid signature")
        account = path.split("/", 3)[2]
        grant = SignedGrant(account, key.container, write=True)
        if not path.endswith("/") and path.count("/") < 4:
            path += "/"
        body = CappedBody(form, max_file_size)
        answer = subrequest(self.app, act_under(dict(environ), grant), "PUT",
                            path + attributes["filename"], source="FP", headers=headers,
                            body=body)
        answer_body = answer.read(ANSWER_BODY_LIMIT)
        if form.truncated:
            raise ClientDisconnect("the form ended before its closing boundary")
        if body.exceeded:
            raise FormInvalid("max_file_size exceeded")
        cors = [(name, value) for name, value in answer.header_list
                if name.lower().startswith("access-control-")]
        return answer.status_line, cors, answer_body


def path_text(environ: dict) -> str:
    try:
        return from_wsgi(environ.get("PATH_INFO", ""))
    except UnicodeError:
        return ""
