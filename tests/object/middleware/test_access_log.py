"""The proxy's access log through the real proxy: one line per client request, with the
status, the body bytes received from the client and those it got, whichever layer answered
it (a temp URL's 401, an SLO's GET); sub-requests logged apart, marked by their source as Swift's proxy logs them."""

from __future__ import annotations

import json
import re
import time

import pytest
import requests

from tests.object.middleware.test_slo import PARTS, WHOLE, put_segments
from tests.object.middleware.test_tempurl import temp_url

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


def access_lines(cluster, trans_id: str) -> tuple[list[str], list[str]]:
    """The proxy log's access lines of ``trans_id``: the client's, then the sub-requests'
    (waiting a little for the client's: it is written once the answer is sent)."""
    pattern = re.compile(rf'soko\.access INFO \[[^]]*\] \S+ {trans_id} "(.*)$')
    deadline = time.monotonic() + 5
    while True:
        text = (cluster.data_dir / "proxy.log").read_text(errors="replace")
        lines = [m.group(1) for m in map(pattern.search, text.splitlines()) if m]
        client = [line for line in lines if not line.endswith(")")]
        if client or time.monotonic() > deadline:
            return client, [line for line in lines if line.endswith(")")]
        time.sleep(0.05)


def test_a_temp_url_refusal_is_logged_once(api, c, cluster):
    put = api.put(f"{c}/o", data=b"hello")
    assert put.status_code == 201
    client, _ = access_lines(cluster, put.headers["x-trans-id"])
    # The body bytes received, then those sent (Swift's bytes_recvd bytes_sent).
    _, status, _, received, sent = client[0].rsplit(" ", 4)
    assert (status, received, sent) == ("201", "5", str(len(put.content)))
    r = requests.get(temp_url(f"{c}/o", "GET"), timeout=10)  # the container has no key: 401
    assert r.status_code == 401
    client, _ = access_lines(cluster, r.headers["x-trans-id"])
    assert len(client) == 1, client
    request, status, _, received, sent = client[0].rsplit(" ", 4)
    assert request.startswith('GET /v1/') and "temp_url_sig=" in request
    assert (status, received, sent) == ("401", "0", str(len(r.content)))
    assert len(re.search(r"temp_url_sig=([^&]*)", request).group(1)) < 64  # cut short


def test_an_slo_get_is_logged_once_and_its_segments_as_slo(api, c, cluster):
    entries = put_segments(api, c, PARTS)
    assert api.put(f"{c}/big?multipart-manifest=put",
                   data=json.dumps(entries)).status_code == 201
    r = api.get(f"{c}/big")
    assert r.status_code == 200 and r.content == WHOLE
    client, subrequests = access_lines(cluster, r.headers["x-trans-id"])
    assert len(client) == 1, client
    request, status, _, received, sent = client[0].rsplit(" ", 4)
    assert request == f'GET /{c.split("/", 3)[3]}/big"'
    assert (status, received, sent) == ("200", "0", str(len(WHOLE)))
    assert sum(line.endswith(" (SLO)") for line in subrequests) == len(PARTS)
