"""Canned ACLs on buckets (container ACLs underneath) and anonymous reads of public ones."""

from __future__ import annotations

import uuid

import pytest
import requests
from botocore.exceptions import ClientError

from tests.object.s3.conftest import error_of

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def grants(acl: dict) -> list[tuple[str, str]]:
    return [(g["Grantee"].get("URI") or g["Grantee"]["ID"], g["Permission"])
            for g in acl["Grants"]]


def test_public_read_bucket_serves_anonymous_reads(cluster, s3, swift):
    name = f"pub-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name, ACL="public-read")
    s3.put_object(Bucket=name, Key="dir/page.html", Body=b"<p>hi</p>", ContentType="text/html")
    acl = s3.get_bucket_acl(Bucket=name)
    owner = acl["Owner"]["ID"]
    assert grants(acl) == [(owner, "FULL_CONTROL"), (ALL_USERS, "READ")]
    assert swift.head(f"{swift.base}/{name}").headers["X-Container-Read"] == ".r:*,.rlistings"

    got = requests.get(f"{cluster.proxy_url}/{name}/dir/page.html", timeout=30)
    assert got.status_code == 200 and got.content == b"<p>hi</p>"
    assert got.headers["Content-Type"] == "text/html"
    assert requests.head(f"{cluster.proxy_url}/{name}/dir/page.html", timeout=30).ok
    listing = requests.get(f"{cluster.proxy_url}/{name}?list-type=2", timeout=30)
    assert listing.status_code == 200 and b"<Key>dir/page.html</Key>" in listing.content
    missing = requests.get(f"{cluster.proxy_url}/{name}/nothing", timeout=30)
    assert missing.status_code == 404 and b"<Code>NoSuchKey</Code>" in missing.content
    written = requests.put(f"{cluster.proxy_url}/{name}/new", data=b"x", timeout=30)
    assert written.status_code == 403 and b"<Code>AccessDenied</Code>" in written.content

    s3.put_bucket_acl(Bucket=name, ACL="private")
    assert grants(s3.get_bucket_acl(Bucket=name)) == [(owner, "FULL_CONTROL")]
    refused = requests.get(f"{cluster.proxy_url}/{name}/dir/page.html", timeout=30)
    assert refused.status_code == 403 and b"<Code>AccessDenied</Code>" in refused.content
    assert requests.get(f"{cluster.proxy_url}/info", timeout=30).status_code == 200


def test_private_by_default_and_object_acls(cluster, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"secret")
    acl = s3.get_bucket_acl(Bucket=bucket)
    assert grants(acl) == [(acl["Owner"]["ID"], "FULL_CONTROL")]
    anonymous = requests.get(f"{cluster.proxy_url}/{bucket}/k", timeout=30)
    assert anonymous.status_code == 403 and b"<Code>AccessDenied</Code>" in anonymous.content
    object_acl = s3.get_object_acl(Bucket=bucket, Key="k")
    assert grants(object_acl) == [(acl["Owner"]["ID"], "FULL_CONTROL")]
    s3.put_object_acl(Bucket=bucket, Key="k", ACL="private")
    with pytest.raises(ClientError) as exc:
        s3.get_object_acl(Bucket=bucket, Key="missing")
    assert error_of(exc) == (404, "NoSuchKey")


def test_acls_beyond_canned_are_not_implemented(s3, swift, bucket):
    owner = s3.get_bucket_acl(Bucket=bucket)["Owner"]
    attempts = [
        lambda: s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write"),
        lambda: s3.put_bucket_acl(Bucket=bucket, ACL="authenticated-read"),
        lambda: s3.put_bucket_acl(Bucket=bucket, GrantRead=f"id={owner['ID']}"),
        lambda: s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={
            "Owner": owner, "Grants": [{"Grantee": {"Type": "Group", "URI": ALL_USERS},
                                        "Permission": "READ"}]}),
        lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="public-read"),
        lambda: s3.create_bucket(Bucket=f"rw-{uuid.uuid4().hex[:8]}",
                                 ACL="public-read-write"),
    ]
    for attempt in attempts:
        with pytest.raises(ClientError) as exc:
            attempt()
        assert error_of(exc) == (501, "NotImplemented")
    assert "X-Container-Read" not in swift.head(f"{swift.base}/{bucket}").headers
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
