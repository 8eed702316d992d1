"""TempURL through the real proxy: a URL the ``swift tempurl`` CLI signs works, then expires;
a signed PUT stores bytes; prefix, ISO 8601 and IP-range URLs; and a temp URL never reaches
more than it was signed for (another object, a listing, the account, a copy, a manifest),
whatever the client adds. Answers as the reference Swift 2.38 gave them."""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from soko.object.middleware.signatures import parse_signature

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

KEY = "s3cr3t-key"
INVALID = "401 Unauthorized: Temp URL invalid\n"


def temp_url(url: str, method: str, *, expires: int | str | None = None, key: str = KEY,
             prefix: str | None = None, ip: str | None = None, digest=hashlib.sha256) -> str:
    """``url`` signed as Swift's docs sign it (``swiftclient.utils.generate_temp_url``)."""
    path = urlsplit(url).path
    expires = expires or int(time.time()) + 60
    signed_expires = expires if isinstance(expires, int) else calendar.timegm(
        time.strptime(expires, "%Y-%m-%dT%H:%M:%SZ"))
    container_path = "/".join(path.split("/", 4)[:4])
    signed_path = f"prefix:{container_path}/{prefix}" if prefix is not None else path
    message = (f"ip={ip}\n" if ip else "") + f"{method}\n{signed_expires}\n{signed_path}"
    sig = hmac.new(key.encode(), message.encode(), digest).hexdigest()
    query = f"temp_url_sig={sig}&temp_url_expires={expires}"
    if prefix is not None:
        query += f"&temp_url_prefix={prefix}"
    if ip:
        query += f"&temp_url_ip_range={ip}"
    return f"{url}?{query}"


@pytest.fixture
def keyed(api, c) -> str:
    """A fresh container with a TempURL key, holding ``o`` (``hello``, with metadata)."""
    assert api.post(c, headers={"X-Container-Meta-Temp-URL-Key": KEY}).status_code == 204
    assert api.put(f"{c}/o", data=b"hello", headers={
        "X-Object-Meta-Color": "red", "X-Object-Meta-Public-Tag": "yes"}).status_code == 201
    return c


def test_swift_cli_url_works_then_expires(cluster, keyed):
    path = urlsplit(f"{keyed}/o").path
    swift = Path(sys.executable).with_name("swift")
    signed = subprocess.run([str(swift), "tempurl", "GET", "3", path, KEY], check=True,
                            capture_output=True, text=True, timeout=60).stdout.strip()
    url = cluster.proxy_url + signed
    r = requests.get(url, timeout=10)  # no token: the signature is the authority
    assert r.status_code == 200 and r.content == b"hello"
    assert r.headers["content-disposition"] == "attachment; filename=\"o\"; filename*=UTF-8''o"
    assert "expires" in r.headers and "x-object-meta-color" not in r.headers
    assert r.headers["x-object-meta-public-tag"] == "yes"
    r = requests.get(url + "&inline&filename=My%20File.txt", timeout=10)
    assert r.headers["content-disposition"] == \
        "inline; filename=\"My File.txt\"; filename*=UTF-8''My%20File.txt"
    assert requests.head(url, timeout=10).headers["content-length"] == "5"
    time.sleep(max(0.0, int(signed.rsplit("=", 1)[1]) - time.time() + 1.1))
    r = requests.get(url, timeout=10)
    assert (r.status_code, r.text) == (401, INVALID)
    assert r.headers["www-authenticate"] == 'Swift realm="unknown"'
    assert r.headers["x-openstack-request-id"] == r.headers["x-trans-id"]
    head = requests.head(url, timeout=10)
    assert head.status_code == 401 and head.headers["content-length"] == "0"


def test_signed_put_stores_bytes_and_reaches_nothing_else(api, keyed):
    put = temp_url(f"{keyed}/new", "PUT")
    r = requests.put(put, data=b"signed bytes", headers={"X-Object-Meta-Kind": "upload",
                                                          "X-Timestamp": "1000000000.00000"},
                     timeout=10)
    assert r.status_code == 201, r.text
    stored = api.get(f"{keyed}/new")
    assert stored.content == b"signed bytes" and stored.headers["x-object-meta-kind"] == "upload"
    assert float(stored.headers["x-timestamp"]) > 1e9 + 1  # X-Timestamp was not let in
    assert requests.head(put, timeout=10).status_code == 200  # a PUT signature allows HEAD
    sig = put.split("?", 1)[1]
    for method, url in [("GET", put), ("DELETE", put), ("PUT", f"{keyed}/o?{sig}"),
                        ("PUT", f"{keyed}/new/x?{sig}"), ("GET", f"{keyed}?{sig}"),
                        ("GET", f"{keyed}/?{sig}"), ("PUT", f"{keyed}?{sig}"),
                        ("GET", f"{api.base}?{sig}"),
                        ("PUT", put.replace("/v1/", "/v1.0/"))]:
        r = requests.request(method, url, data=b"x" if method == "PUT" else None, timeout=10)
        assert (r.status_code, r.text) == (401, INVALID), (method, url)
        assert (r.headers.get("connection") == "close") == (method == "PUT")  # body unread
    # A token does not widen it: the request is the signature's.
    r = api.get(put)
    assert r.status_code == 401
    for header, value in [("X-Copy-From", f"{keyed.rsplit('/', 1)[1]}/o"),
                          ("X-Object-Manifest", f"{keyed.rsplit('/', 1)[1]}/o"),
                          ("X-Symlink-Target", f"{keyed.rsplit('/', 1)[1]}/o")]:
        r = requests.put(put, headers={header: value}, data=b"", timeout=10)
        assert (r.status_code, r.text) == (400, f"The header {header!r} is not allowed in "
                                                "this tempurl")
    # Its query is dropped: no manifest rides in on it, the bytes are stored as they are.
    r = requests.put(put + "&multipart-manifest=put", data=b'[{"path": "/c/o"}]', timeout=10)
    assert r.status_code == 201 and api.get(f"{keyed}/new").content == b'[{"path": "/c/o"}]'
    assert api.get(f"{keyed}/o").content == b"hello"
    delete = temp_url(f"{keyed}/new", "DELETE")
    assert requests.delete(delete, timeout=10).status_code == 204
    assert api.head(f"{keyed}/new").status_code == 404


def test_prefix_iso_digests_and_ip_range(api, keyed):
    api.put(f"{keyed}/dir/a", data=b"in prefix")
    url = temp_url(f"{keyed}/dir/a", "GET", prefix="dir/")
    assert requests.get(url, timeout=10).content == b"in prefix"
    assert requests.get(url.replace("/dir/a?", "/o?"), timeout=10).status_code == 401
    api.put(f"{keyed}/ü ø", data=b"unicode")  # signed as text, sent percent-encoded
    assert requests.get(temp_url(f"{keyed}/ü ø", "GET"), timeout=10).content == b"unicode"
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
    assert requests.get(temp_url(f"{keyed}/o", "GET", expires=iso), timeout=10).ok
    raw = hmac.new(KEY.encode(), f"GET\n{int(time.time()) + 60}\n{urlsplit(keyed).path}/o"
                   .encode(), hashlib.sha512).digest()
    b64 = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    url = f"{keyed}/o?temp_url_sig=sha512:{b64}&temp_url_expires={int(time.time()) + 60}"
    assert requests.get(url, timeout=10).content == b"hello"
    assert requests.get(temp_url(f"{keyed}/o", "GET", digest=hashlib.sha512), timeout=10).ok
    sha1 = requests.get(temp_url(f"{keyed}/o", "GET", digest=hashlib.sha1), timeout=10)
    assert (sha1.status_code, sha1.text) == (401, INVALID)  # refused unless configured
    assert requests.get(temp_url(f"{keyed}/o", "GET", ip="127.0.0.0/8"), timeout=10).ok
    assert requests.get(temp_url(f"{keyed}/o", "GET", ip="10.0.0.0/8"),
                        timeout=10).status_code == 401
    assert requests.get(temp_url(f"{keyed}/o", "GET", key="wrong"),
                        timeout=10).status_code == 401
    assert requests.get(temp_url(f"{keyed}/o", "GET", expires=10**20),
                        timeout=10).status_code == 401  # no date says it (Swift: 500)
    # A DLO in the key's scope is served whole: its segments are read for it.
    name = keyed.rsplit("/", 1)[1]
    api.put(f"{keyed}/dlo", data=b"", headers={"X-Object-Manifest": f"{name}/dir/"})
    assert requests.get(temp_url(f"{keyed}/dlo", "GET"), timeout=10).content == b"in prefix"
    # Out of the container key's scope, its segments stay out of reach (Swift: the same 401).
    elsewhere = f"{keyed}-segs"
    api.put(elsewhere)
    api.put(f"{elsewhere}/s1", data=b"SECRET")
    api.put(f"{keyed}/dlo2", data=b"", headers={"X-Object-Manifest": f"{name}-segs/s"})
    r = requests.get(temp_url(f"{keyed}/dlo2", "GET"), timeout=10)
    assert r.status_code == 401 and b"SECRET" not in r.content


def test_account_key_and_keys_hidden_from_others(api, cluster, keyed):
    from tests.object.test_cluster import Api

    account_key = "account-wide"
    assert api.post(api.base, headers={"X-Account-Meta-Temp-URL-Key-2": account_key}).ok
    try:
        url = temp_url(f"{keyed}/o", "GET", key=account_key)
        assert requests.get(url, timeout=10).content == b"hello"
        assert api.head(api.base).headers["x-account-meta-temp-url-key-2"] == account_key
    finally:
        api.post(api.base, headers={"X-Remove-Account-Meta-Temp-URL-Key-2": "x"})
    assert requests.get(url, timeout=10).status_code == 401  # the key is gone
    api.post(keyed, headers={"X-Container-Read": "other:otheruser"})
    other = Api(*cluster.auth("other:otheruser"))
    head = other.head(keyed)
    assert head.status_code == 204 and "x-container-meta-temp-url-key" not in head.headers
    assert api.head(keyed).headers["x-container-meta-temp-url-key"] == KEY


def test_info_advertises_tempurl(cluster):
    info = requests.get(f"{cluster.proxy_url}/info", timeout=10).json()
    assert info["tempurl"] == {
        "methods": ["GET", "HEAD", "PUT", "POST", "DELETE"],
        "incoming_remove_headers": ["x-timestamp", "x-open-expired"],
        "incoming_allow_headers": [],
        "outgoing_remove_headers": ["x-object-meta-*"],
        "outgoing_allow_headers": ["x-object-meta-public-*"],
        "allowed_digests": ["sha256", "sha512"]}
    assert info["formpost"] == {"allowed_digests": ["sha256", "sha512"]}


def test_signature_forms():
    assert parse_signature("ab" * 32) == ("sha256", "ab" * 32)
    raw = bytes(range(64))
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        assert parse_signature("sha512:" + encode(raw).decode().rstrip("=")) == \
            ("sha512", raw.hex())
    for bad in ("", "ab" * 31, "zz" * 32, "sha512:***"):
        with pytest.raises(ValueError):
            parse_signature(bad)


def test_digests_and_methods_are_configured(tmp_path):
    from soko.common.config import ConfigError
    from soko.object.middleware.tempurl import TempURL
    from tests.object.middleware.test_pipeline import proxy_section

    section = proxy_section(tmp_path, allowed_digests=["sha1", "sha512"],
                            tempurl_methods=["GET"])
    info = TempURL.swift_info(section)
    assert (info["allowed_digests"], info["deprecated_digests"], info["methods"]) == (
        ["sha1", "sha512"], ["sha1"], ["GET"])
    for key, value in [("allowed_digests", ["md5"]), ("allowed_digests", []),
                       ("tempurl_methods", ["COPY"])]:
        with pytest.raises(ConfigError, match=key):
            proxy_section(tmp_path, **{key: value})


def test_a_signed_put_is_held_to_the_container_quota(api, keyed):
    """A temp URL write meets the quota like any other: 413 and nothing stored."""
    assert api.post(keyed, headers={"X-Container-Meta-Quota-Bytes": "10"}).status_code == 204
    r = requests.put(temp_url(f"{keyed}/big", "PUT"), data=b"x" * 11, timeout=10)
    assert (r.status_code, r.text) == (413, "Upload exceeds quota.")
    assert api.head(f"{keyed}/big").status_code == 404
