"""FormPost through the real proxy: a plain HTML-form POST (``requests``' multipart encoding)
stores its files and redirects; a form too big, with too many files, expired or tampered
with is refused as Swift words it, and the refused file is not stored. The body parser is
checked on every split of its input."""

from __future__ import annotations

import hashlib
import hmac
import io
import time
from urllib.parse import urlsplit

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from soko.object.middleware.form_parts import FormParts

KEY = "form-key"
REDIRECT = "https://example.test/done?x=1"
ORIGIN = "https://app.test"  # the container lets a page there upload with the form


def form_fields(url: str, *, redirect: str = REDIRECT, max_file_size: int = 1 << 20,
                max_file_count: int = 3, expires: int | None = None, key: str = KEY,
                **extra: str) -> dict[str, str]:
    """The hidden fields of a form posting to ``url``, signed as Swift's docs sign them."""
    expires = expires or int(time.time()) + 60
    message = f"{urlsplit(url).path}\n{redirect}\n{max_file_size}\n{max_file_count}\n{expires}"
    return {"redirect": redirect, "max_file_size": str(max_file_size),
            "max_file_count": str(max_file_count), "expires": str(expires),
            "signature": hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest(),
            **extra}


def post(url: str, fields: dict[str, str], files: list[tuple[str, bytes]], **headers: str):
    """The form as a browser sends it: the fields first, then the files."""
    parts = [(name, (None, value)) for name, value in fields.items()]
    parts += [(f"file{i}", (filename, data)) for i, (filename, data) in enumerate(files)]
    return requests.post(url, files=parts, allow_redirects=False, timeout=60, headers=headers)


@pytest.fixture
def keyed(api, c) -> str:
    assert api.post(c, headers={"X-Container-Meta-Temp-URL-Key": KEY,
                                "X-Container-Meta-Access-Control-Allow-Origin": ORIGIN,
                                }).status_code == 204
    return c



@pytest.mark.privileged
@pytest.mark.slow
def test_form_stores_files_and_redirects(api, keyed):
    big = bytes(range(256)) * 12_000 + b"\r\n--tail"  # 3 MB: many reads, a boundary look-alike
    r = post(f"{keyed}/up/", form_fields(f"{keyed}/up/", max_file_size=len(big),
                                         x_delete_after="3600"),
             [("a.txt", b"first file"), ("b.bin", big)])
    assert r.status_code == 303, r.text
    location = f"{REDIRECT}&status=201&message="
    assert r.headers["location"] == location
    assert r.text == f'<html><body><p><a href="{location}">Click to continue...</a></p>' \
                     "</body></html>"
    assert api.get(f"{keyed}/up/a.txt").content == b"first file"
    stored = api.get(f"{keyed}/up/b.bin")
    assert stored.content == big and int(stored.headers["x-delete-at"]) > time.time() + 3000
    # Without a redirect the answer is the PUT's status line, as text; a cross-origin
    # upload gets the container's CORS answer.
    fields = form_fields(keyed, redirect="")
    del fields["redirect"]
    r = post(keyed, fields, [("c.txt", b"third")], Origin=ORIGIN)
    assert (r.status_code, r.text) == (201, "201 Created")
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert api.get(f"{keyed}/c.txt").content == b"third"


@pytest.mark.privileged
@pytest.mark.slow
def test_refused_forms_leave_nothing(api, keyed):
    url = f"{keyed}/r-"
    r = post(url, form_fields(url, max_file_size=10, redirect=""), [("big", b"x" * 11)])
    assert (r.status_code, r.text) == (400, "FormPost: max_file_size exceeded")
    r = post(url, form_fields(url, max_file_count=1), [("one", b"1"), ("two", b"2")])
    assert r.status_code == 303
    assert r.headers["location"] == f"{REDIRECT}&status=400&message=max%20file%20count%20exceeded"
    r = post(url, form_fields(url, expires=int(time.time()) - 1), [("late", b"x")])
    assert (r.status_code, r.text) == (401, "FormPost: Form Expired")
    tampered = {**form_fields(url, max_file_size=10), "max_file_size": "1000"}
    r = post(url, tampered, [("tampered", b"x" * 100)])
    assert (r.status_code, r.text) == (401, "FormPost: Invalid Signature")
    r = post(url, form_fields(url, key="not-the-key"), [("wrongkey", b"x")])
    assert r.status_code == 401
    r = post(url, form_fields(url), [])
    assert (r.status_code, r.headers["location"]) == (
        303, f"{REDIRECT}&status=400&message=no%20files%20to%20process")
    bad = requests.post(url, data=b"not a form", timeout=10, headers={
        "Content-Type": "multipart/form-data; boundary=XyZ"})
    assert (bad.status_code, bad.text) == (400, "FormPost: invalid starting boundary")
    names = [entry["name"] for entry in api.get(f"{keyed}?format=json").json()]
    assert names == ["r-one"]  # the first file of the form with one too many, as in Swift


PARTS = st.lists(st.tuples(st.text("abc", min_size=1, max_size=5),
                           st.binary(max_size=200)), max_size=4)


@given(parts=PARTS, split=st.integers(1, 50))
def test_form_parts_split_anywhere(parts, split):
    boundary = b"b0undary"
    body = b"\r\n".join(
        b"--" + boundary + b"\r\nContent-Disposition: form-data; name=\"" + name.encode()
        + b"\"\r\n\r\n" + data for name, data in parts) + b"\r\n--" + boundary + b"--\r\n"
    if not parts:
        body = b"--" + boundary + b"--\r\n"

    class Trickle(io.RawIOBase):
        def __init__(self):
            self.left = body

        def read(self, size=-1):
            chunk, self.left = self.left[:split], self.left[split:]
            return chunk

    form = FormParts(Trickle(), boundary)
    seen = []
    for headers in form:
        data = b""
        while chunk := form.read(7):
            data += chunk
        seen.append((headers["content-disposition"].split('"')[1], data))
    assert seen == parts
