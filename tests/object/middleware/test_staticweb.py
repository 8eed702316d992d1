"""Static web sites through the real proxy, for browsers (anonymous, or ``X-Web-Mode``):
index pages, HTML listings, error pages, directory markers and redirects, answered as Swift
2.38 answers them (probed on the reference); private containers stay private."""

from __future__ import annotations

import uuid

import pytest
import requests

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

HTML = "text/html; charset=UTF-8"


@pytest.fixture(scope="module")
def listed(cluster_api) -> str:
    """A public container with listings and error pages (and no index)."""
    api = cluster_api
    url = f"{api.base}/web-{uuid.uuid4().hex[:6]}"
    assert api.put(url, headers={"X-Container-Read": ".r:*,.rlistings",
                                 "X-Container-Meta-Web-Listings": "true",
                                 "X-Container-Meta-Web-Error": "error.html"}).status_code == 201
    for name, data, kind in [("404error.html", b"<p>gone</p>", "text/html"),
                             ("a b.txt", b"abc", "text/plain"),
                             ("dir/x.bin", b"1234", "application/octet-stream"),
                             ("emptydir", b"", "application/directory")]:
        assert api.put(f"{url}/{name}", data=data, headers={"Content-Type": kind}).status_code \
            == 201
    return url


def get(url: str, **headers) -> requests.Response:
    return requests.get(url, headers=headers, allow_redirects=False, timeout=10)


def test_info_advertises_staticweb(cluster):
    assert requests.get(f"{cluster.proxy_url}/info", timeout=10).json()["staticweb"] == {}


def test_listing_redirects_and_error_pages(listed):
    r = get(listed)
    assert r.status_code == 301 and r.headers["location"] == listed + "/"
    r = get(listed + "/")
    assert r.status_code == 200 and r.headers["content-type"] == HTML
    path = listed.split("/", 3)[3]
    assert f"  <title>Listing of /{path}/</title>\n" in r.text
    assert ('   <tr class="item subdir">\n'
            '    <td class="colname"><a href="./dir/">dir/</a></td>\n') in r.text
    assert ('   <tr class="item type-text type-plain">\n'
            '    <td class="colname"><a href="./a%20b%2Etxt">a b.txt</a></td>\n'
            '    <td class="colsize">3</td>\n') in r.text
    assert '<tr class="item type-application type-directory">' in r.text
    assert 'id="parent"' not in r.text
    r = get(listed + "/dir")
    assert r.status_code == 301 and r.headers["location"] == listed + "/dir/"
    r = get(listed + "/dir/")
    assert '<td class="colname"><a href="../">../</a></td>' in r.text
    assert '<a href="./x%2Ebin">x.bin</a></td>\n    <td class="colsize">4</td>' in r.text
    for missing in ("/nothere", "/emptydir", "/nodir/"):
        r = get(listed + missing)
        assert (r.status_code, r.text) == (404, "<p>gone</p>"), missing
    assert get(listed + "/a%20b.txt").content == b"abc"


def test_only_browsers_get_the_site(cluster_api, listed):
    r = cluster_api.get(listed + "/")  # the owner: the API's listing
    assert r.status_code == 200 and r.text.splitlines()[0] == "404error.html"
    r = cluster_api.get(listed + "/", headers={"X-Web-Mode": "true"})
    assert r.headers["content-type"] == HTML and "<h1 id=\"title\">Listing of" in r.text
    r = cluster_api.get(listed + "-missing/", headers={"X-Web-Mode": "true"})
    assert (r.status_code, r.text) == (404, "<html><h1>Not Found</h1><p>The resource could "
                                            "not be found.</p></html>")


def test_index_pages_css_and_label(cluster_api):
    api = cluster_api
    url = f"{api.base}/web-{uuid.uuid4().hex[:6]}"
    assert api.put(url, headers={"X-Container-Read": ".r:*",
                                 "X-Container-Meta-Web-Index": "index.html"}).status_code == 201
    for name in ("index.html", "sub/index.html"):
        assert api.put(f"{url}/{name}", data=f"<h1>{name}</h1>".encode(),
                       headers={"Content-Type": "text/html"}).status_code == 201
    # Without .rlistings an anonymous caller may not read the container itself (Swift: 401).
    assert get(url + "/").status_code == 401
    r = get(url + "/sub")
    assert r.status_code == 301 and r.headers["location"] == url + "/sub/"
    r = get(url + "/sub/")
    assert r.status_code == 200 and r.text == "<h1>sub/index.html</h1>"
    assert api.post(url, headers={"X-Container-Read": ".r:*,.rlistings",
                                  "X-Container-Meta-Web-Listings": "on",
                                  "X-Container-Meta-Web-Listings-CSS": "style.css",
                                  "X-Container-Meta-Web-Listings-Label": "Site"}).status_code \
        == 204
    assert get(url + "/").text == "<h1>index.html</h1>"
    assert api.put(f"{url}/docs/a.txt", data=b"a").status_code == 201
    r = get(url + "/docs/")
    assert "<title>Listing of Site/docs/</title>" in r.text
    assert '<link rel="stylesheet" type="text/css" href="../style.css" />' in r.text


def test_private_containers_stay_private(cluster_api):
    url = f"{cluster_api.base}/web-{uuid.uuid4().hex[:6]}"
    assert cluster_api.put(url, headers={"X-Container-Meta-Web-Listings": "true"}).status_code \
        == 201
    assert cluster_api.put(f"{url}/secret", data=b"s").status_code == 201
    for path in ("", "/", "/secret", "/nothere/"):
        r = get(url + path)
        assert r.status_code == 401 and "secret" not in r.text, path
