"""Bad input to the Swift API is refused with Swift's status and message, and leaves no
trace: expiry times that are not plain integers, names that arrive in headers, ranges."""

from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


def message(r) -> str:
    """Swift's error bodies are the bare text (swift/common/swob.py)."""
    return r.text


FUTURE = str(int(time.time()) + 86400)
NOT_INTEGERS = ["inf", "-inf", "Infinity", "NaN", "1e400", "1e10", "+1999999999",
                "1_999_999_999", "0x7fffffff", "1999999999.5", "", "*",
                "١٢٣٤٥٦٧٨٩٠".encode().decode("latin-1")]  # digits, Arabic-Indic


@pytest.mark.parametrize("header", ["X-Delete-At", "X-Delete-After"])
def test_expiry_must_be_a_plain_integer(cluster_api, cluster_container, header):
    api, c = cluster_api, cluster_container
    url = f"{api.base}/{c}"
    assert api.put(f"{url}/o", data=b"keep").status_code == 201
    cases = [(v, 400, f"Non-integer {header}") for v in NOT_INTEGERS]
    cases += [("-5", 400, f"{header} in past")]
    if header == "X-Delete-At":
        cases += [("0", 400, "X-Delete-At in past")]
    for value, status, text in cases:
        for method, path, extra in (
                ("PUT", "new", {}), ("POST", "o", {}),
                ("COPY", "o", {"Destination": f"{c}/copied"}),
                ("PUT", "copied", {"X-Copy-From": f"{c}/o", "Content-Length": "0"})):
            r = api.request(method, f"{url}/{path}", headers={header: value, **extra},
                            data=b"body" if method == "PUT" and not extra else None)
            assert r.status_code == status, (method, value, r.status_code, r.text)
            if text:
                assert message(r) == text, (method, value)
    head = api.head(f"{url}/o")
    assert "x-delete-at" not in head.headers
    assert [o["name"] for o in api.get(f"{url}?format=json").json()] == ["o"]
    r = api.post(f"{url}/o", headers={header: "0000086400" if header == "X-Delete-After"
                                      else FUTURE})
    assert r.status_code == 202
    assert int(api.head(f"{url}/o").headers["x-delete-at"]) > time.time()


@pytest.mark.parametrize("value", ["1" * 100, str(2**64), "9" * 5000])
def test_expiry_beyond_swifts_largest_is_clamped(cluster_api, cluster_container, value):
    """Swift's ``check_delete_headers`` passes the time through
    ``normalize_delete_at_timestamp``: ``min(max(0, t), 9999999999)``; a hundred 1s read back
    as 9999999999 (swift/common/constraints.py, swift/common/utils)."""
    api, c = cluster_api, cluster_container
    assert api.put(f"{api.base}/{c}/far", data=b"x",
                   headers={"X-Delete-At": value}).status_code == 201
    assert api.head(f"{api.base}/{c}/far").headers["x-delete-at"] == "9999999999"
    assert api.post(f"{api.base}/{c}/far",
                    headers={"X-Delete-After": value}).status_code == 202
    assert api.head(f"{api.base}/{c}/far").headers["x-delete-at"] == "9999999999"


def test_names_in_headers_are_checked_like_names_in_the_path(cluster, cluster_api,
                                                              cluster_container):
    api, c = cluster_api, cluster_container
    url = f"{api.base}/{c}"
    assert api.put(f"{url}/src", data=b"source").status_code == 201
    form = "header must be of the form <container name>/<object name>"
    cases = [
        ({"Destination": f"{c}/%00"}, 412, "Invalid UTF8 or contains NULL"),
        ({"Destination": f"{c}/a%00b"}, 412, "Invalid UTF8 or contains NULL"),
        ({"Destination": f"{c}/a%FF"}, 412, "Invalid UTF8 or contains NULL"),
        ({"Destination": f"{c}/%C0%AF"}, 412, "Invalid UTF8 or contains NULL"),
        ({"Destination": f"{c}/%ED%A0%80"}, 412, "Invalid UTF8 or contains NULL"),
        ({"Destination": f"%00/{c}"}, 412, "Invalid UTF8 or contains NULL"),
        ({"Destination": c}, 412, f"Destination {form}"),
        ({"Destination": f"{c}/"}, 412, f"Destination {form}"),
        ({"Destination": f"//{c}/x"}, 412, f"Destination {form}"),
        ({"Destination": f"{c}/{'n' * 1025}"}, 400, "Object name length of 1025 longer than 1024"),
        # A container name too long to exist: 404 as in Swift (400 only creating it).
        ({"Destination": f"{'n' * 257}/x"}, 404, None),
        ({"Destination": f"{c}/x", "Destination-Account": ""}, 412,
         "Account name cannot be empty"),
        ({"Destination": f"{c}/x", "Destination-Account": "AUTH_a/b"}, 412,
         "Account name cannot contain slashes"),
        ({"Destination": f"{c}/x", "Destination-Account": "AUTH_%FF"}, 412,
         "Invalid UTF8 or contains NULL"),
        ({"Destination": f"{c}/x", "Destination-Account": "A" * 300}, 400, None),
    ]
    for headers, status, text in cases:
        r = api.request("COPY", f"{url}/src", headers=headers)
        assert r.status_code == status, (headers, r.status_code, r.text)
        if text:
            assert message(r) == text, headers
        if headers.get("Destination-Account") == "":
            continue  # an empty X-Copy-From-Account is none to Swift's copy middleware
        copy_from = {"X-Copy-From": headers["Destination"].replace("/src", ""),
                     "Content-Length": "0"}
        if "Destination-Account" in headers:
            copy_from = {"X-Copy-From": f"{c}/src", "Content-Length": "0",
                         "X-Copy-From-Account": headers["Destination-Account"]}
        r = api.put(f"{url}/dst", headers=copy_from)
        # A source name too long to exist is not found (Swift: 404); only a new one is 400.
        source_status = 404 if "Object name length" in (text or "") else status
        assert r.status_code == source_status, (copy_from, r.status_code, r.text)
    for name in ("%00", "a%FF", "a%00b"):
        assert api.put(f"{url}/{name}", data=b"x").status_code == 412
    assert [o["name"] for o in api.get(f"{url}?format=json").json()] == ["src"]
    assert api.get(f"{url}?format=xml").status_code == 200
    # The same account named in the header is fine; another project's account is not ours.
    r = api.request("COPY", f"{url}/src", headers={"Destination": f"/{c}/copy",
                                                   "Destination-Account": api.account})
    assert r.status_code == 201 and api.get(f"{url}/copy").content == b"source"
    other_url, _ = cluster.auth("other:otheruser")
    other_account = other_url.rsplit("/", 1)[1]
    r = api.request("COPY", f"{url}/src", headers={"Destination": f"{c}/stolen",
                                                   "Destination-Account": other_account})
    assert r.status_code == 403


def test_unsatisfiable_range_is_416_with_a_message(cluster_api, cluster_container):
    api, c = cluster_api, cluster_container
    url = f"{api.base}/{c}/r"
    assert api.put(url, data=b"0123456789").status_code == 201
    r = api.get(url, headers={"Range": "bytes=20-"})
    assert r.status_code == 416 and r.headers["content-range"] == "bytes */10"
    assert message(r) == ("<html><h1>Requested Range Not Satisfiable</h1>"
                          "<p>The Range requested is not available.</p></html>")
