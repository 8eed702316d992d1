"""S3 buckets and listings through boto3, and the same data through the Swift API."""

from __future__ import annotations

import uuid

import pytest
import requests
from botocore.exceptions import ClientError

from tests.object.s3.conftest import error_of, signed_request


def test_bucket_lifecycle(s3, swift):
    name = f"life-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert swift.head(f"{swift.base}/{name}").status_code == 204  # a container too
    s3.head_bucket(Bucket=name)
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] is None  # us-east-1
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name)
    assert error_of(exc) == (409, "BucketAlreadyOwnedByYou")
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=name)
    assert error_of(exc) == (409, "BucketNotEmpty")
    s3.delete_object(Bucket=name, Key="k")
    s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=name)
    assert error_of(exc)[0] == 404
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=name)
    assert error_of(exc) == (404, "NoSuchBucket")


def test_location_constraint_body(s3):
    name = f"loc-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={
            "LocationConstraint": "eu-west-1"})
    assert error_of(exc) == (400, "InvalidLocationConstraint")
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


@pytest.mark.parametrize("name", ["UpperCase", "ab", "a" * 64, "dots..twice", "-leading",
                                  "trailing-", "dot.-dash", "192.168.1.1", "under_score"])
def test_bad_bucket_names_are_refused_and_create_nothing(cluster, tester_keys, swift, name):
    url, headers = signed_request(f"{cluster.proxy_url}/{name}", tester_keys, "PUT")
    resp = requests.put(url, headers=headers, timeout=30)
    assert resp.status_code == 400 and b"<Code>InvalidBucketName</Code>" in resp.content
    assert b"<RequestId>tx" in resp.content
    assert swift.head(f"{swift.base}/{name}").status_code == 404


def test_malformed_create_bucket_body(cluster, tester_keys, swift):
    name = f"mal-{uuid.uuid4().hex[:8]}"
    body = b"<CreateBucketConfiguration><LocationConstraint>"
    url, headers = signed_request(f"{cluster.proxy_url}/{name}", tester_keys, "PUT", body)
    resp = requests.put(url, data=body, headers=headers, timeout=30)
    assert resp.status_code == 400 and b"<Code>MalformedXML</Code>" in resp.content
    assert swift.head(f"{swift.base}/{name}").status_code == 404


@pytest.fixture(scope="module")
def listed(s3) -> str:
    name = f"list-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    for key in ("a/1", "a/2", "b/1", "c", "d e+f", "z/z/z"):
        s3.put_object(Bucket=name, Key=key, Body=b"12345")
    return name


def test_list_v2_delimiter_prefix_and_pages(s3, listed):
    everything = s3.list_objects_v2(Bucket=listed)
    assert [o["Key"] for o in everything["Contents"]] == ["a/1", "a/2", "b/1", "c", "d e+f",
                                                          "z/z/z"]
    assert everything["KeyCount"] == 6 and not everything["IsTruncated"]
    assert everything["Contents"][0]["Size"] == 5
    assert everything["Contents"][0]["ETag"] == '"827ccb0eea8a706c4c34a16891f84e7b"'
    folders = s3.list_objects_v2(Bucket=listed, Delimiter="/")
    assert [p["Prefix"] for p in folders["CommonPrefixes"]] == ["a/", "b/", "z/"]
    assert [o["Key"] for o in folders["Contents"]] == ["c", "d e+f"]
    under = s3.list_objects_v2(Bucket=listed, Prefix="a/")
    assert [o["Key"] for o in under["Contents"]] == ["a/1", "a/2"]
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=listed, Delimiter="/", PaginationConfig={"PageSize": 2})
    seen = []
    for page in pages:
        assert page["KeyCount"] <= 2
        seen += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        seen += [o["Key"] for o in page.get("Contents", [])]
    assert sorted(seen) == ["a/", "b/", "c", "d e+f", "z/"]
    after = s3.list_objects_v2(Bucket=listed, StartAfter="c")
    assert [o["Key"] for o in after["Contents"]] == ["d e+f", "z/z/z"]


def test_list_v1_markers(s3, listed):
    first = s3.list_objects(Bucket=listed, MaxKeys=2)
    assert [o["Key"] for o in first["Contents"]] == ["a/1", "a/2"] and first["IsTruncated"]
    rest = s3.list_objects(Bucket=listed, Marker="a/2")
    assert [o["Key"] for o in rest["Contents"]] == ["b/1", "c", "d e+f", "z/z/z"]
    assert rest["Contents"][0]["Owner"]["ID"]
    folders = s3.list_objects(Bucket=listed, Delimiter="/", MaxKeys=1)
    assert folders["IsTruncated"] and folders["NextMarker"] == "a/"
    following = s3.list_objects(Bucket=listed, Delimiter="/", Marker="a/", MaxKeys=1)
    assert [p["Prefix"] for p in following["CommonPrefixes"]] == ["b/"]


def test_list_url_encoding_raw(cluster, tester_keys, listed):
    url, headers = signed_request(
        f"{cluster.proxy_url}/{listed}?list-type=2&prefix=d&encoding-type=url", tester_keys)
    resp = requests.get(url, headers=headers, timeout=30)
    assert resp.status_code == 200 and b"<Key>d%20e%2Bf</Key>" in resp.content
    url, headers = signed_request(f"{cluster.proxy_url}/{listed}?max-keys=many", tester_keys)
    resp = requests.get(url, headers=headers, timeout=30)
    assert resp.status_code == 400 and b"<Code>InvalidArgument</Code>" in resp.content


def test_cross_api_objects_and_metadata(s3, swift, bucket):
    s3.put_object(Bucket=bucket, Key="from-s3", Body=b"boto", Metadata={"color": "blue"},
                  ContentType="text/x-boto")
    got = swift.get(f"{swift.base}/{bucket}/from-s3")
    assert got.content == b"boto" and got.headers["X-Object-Meta-Color"] == "blue"
    assert got.headers["Content-Type"] == "text/x-boto"
    put = swift.put(f"{swift.base}/{bucket}/from-swift", data=b"swift",
                    headers={"X-Object-Meta-Shape": "round", "Content-Type": "text/x-swift"})
    assert put.status_code == 201
    obj = s3.get_object(Bucket=bucket, Key="from-swift")
    assert obj["Body"].read() == b"swift" and obj["Metadata"] == {"shape": "round"}
    assert obj["ContentType"] == "text/x-swift"
    assert obj["ETag"] == f'"{put.headers["ETag"]}"'
    names = [o["name"] for o in swift.get(f"{swift.base}/{bucket}?format=json").json()]
    assert names == [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]


def test_swift_container_is_a_bucket(s3, swift):
    name = f"sw-{uuid.uuid4().hex[:8]}"
    assert swift.put(f"{swift.base}/{name}").status_code == 201
    s3.head_bucket(Bucket=name)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_virtual_hosted_style(cluster, tester_keys, s3, bucket):
    """``[proxy] s3_domain`` set: ``<bucket>.<s3_domain>`` names the bucket (the test cluster
    uses s3.soko.test; no resolver knows it, so the request goes to 127.0.0.1 by hand)."""
    host = f"{bucket}.s3.soko.test:{cluster.proxy_port}"
    url, headers = signed_request(f"http://{host}/v/key.txt", tester_keys, "PUT", b"hosted")
    resp = requests.put(f"{cluster.proxy_url}/v/key.txt", data=b"hosted", timeout=30,
                        headers={**headers, "Host": host})
    assert resp.status_code == 200, resp.text
    assert s3.get_object(Bucket=bucket, Key="v/key.txt")["Body"].read() == b"hosted"
    url, headers = signed_request(f"http://{host}/?list-type=2", tester_keys)
    resp = requests.get(f"{cluster.proxy_url}/?list-type=2", headers={**headers, "Host": host},
                        timeout=30)
    assert resp.status_code == 200 and b"<Key>v/key.txt</Key>" in resp.content
    anonymous = requests.get(f"{cluster.proxy_url}/v/key.txt", headers={"Host": host},
                             timeout=30)
    assert anonymous.status_code == 403 and b"<Code>AccessDenied</Code>" in anonymous.content
