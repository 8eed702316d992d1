"""Who may do what through the S3 API: signatures, presigned URLs, clocks, other projects,
revoked credentials, and what is not built yet."""

from __future__ import annotations

import datetime
import time

import pytest
import requests
from botocore.exceptions import ClientError

from tests.object.s3.conftest import error_of, make_client, signed_request


def test_tampered_signature_and_unknown_key(cluster, tester_keys, bucket):
    url, headers = signed_request(f"{cluster.proxy_url}/{bucket}", tester_keys)
    good = requests.get(url, headers=headers, timeout=30)
    assert good.status_code == 200
    signature = headers["Authorization"][-64:]
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    tampered = {**headers, "Authorization": headers["Authorization"][:-64] + flipped}
    resp = requests.get(url, headers=tampered, timeout=30)
    assert resp.status_code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in resp.content
    assert resp.headers["x-amz-request-id"].encode() in resp.content
    other_url = url + "?prefix=x"  # a signature for one request does not fit another
    assert requests.get(other_url, headers=headers, timeout=30).status_code == 403
    url, headers = signed_request(f"{cluster.proxy_url}/{bucket}",
                                  ("NOSUCHKEY0000000000", tester_keys[1]))
    resp = requests.get(url, headers=headers, timeout=30)
    assert resp.status_code == 403 and b"<Code>InvalidAccessKeyId</Code>" in resp.content


def signing_clock(monkeypatch, when: datetime.datetime) -> None:
    """botocore signs at ``when``: its own signer and, with awscrt installed (a soko
    dependency), the CRT signer it then prefers."""
    import botocore.crt.auth

    for module in (botocore.auth, botocore.crt.auth):
        monkeypatch.setattr(module, "get_current_datetime", lambda **_: when)


def test_skewed_clock_is_refused(cluster, s3, bucket, monkeypatch):
    skewed = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=16)
    signing_clock(monkeypatch, skewed)
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=bucket)
    assert error_of(exc) == (403, "RequestTimeTooSkewed")


def test_presigned_get_and_its_expiry(s3, bucket, monkeypatch):
    s3.put_object(Bucket=bucket, Key="shared.txt", Body=b"for anyone with the link")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared.txt"},
                                    ExpiresIn=300)
    resp = requests.get(url, timeout=30)
    assert resp.status_code == 200 and resp.content == b"for anyone with the link"
    assert requests.get(url.replace("shared.txt", "other.txt"), timeout=30).status_code == 403
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=2)
    signing_clock(monkeypatch, past)
    expired = s3.generate_presigned_url("get_object",
                                        Params={"Bucket": bucket, "Key": "shared.txt"},
                                        ExpiresIn=60)
    resp = requests.get(expired, timeout=30)
    assert resp.status_code == 403 and b"Request has expired" in resp.content


def test_presigned_put(s3, bucket):
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "up"},
                                    ExpiresIn=300)
    assert requests.put(url, data=b"uploaded", timeout=30).status_code == 200
    assert s3.get_object(Bucket=bucket, Key="up")["Body"].read() == b"uploaded"


def test_another_projects_credential_is_denied(s3, other_s3, bucket):
    s3.put_object(Bucket=bucket, Key="private", Body=b"mine")
    calls = [
        lambda: other_s3.list_objects_v2(Bucket=bucket),
        lambda: other_s3.list_objects(Bucket=bucket),
        lambda: other_s3.get_object(Bucket=bucket, Key="private"),
        lambda: other_s3.put_object(Bucket=bucket, Key="theirs", Body=b"x"),
        lambda: other_s3.delete_object(Bucket=bucket, Key="private"),
        lambda: other_s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "private"}]}),
        lambda: other_s3.delete_bucket(Bucket=bucket),
        lambda: other_s3.get_bucket_location(Bucket=bucket),
    ]
    for call in calls:
        with pytest.raises(ClientError) as exc:
            call()
        assert error_of(exc) == (403, "AccessDenied")
    with pytest.raises(ClientError) as exc:
        other_s3.head_bucket(Bucket=bucket)
    assert error_of(exc)[0] == 403
    with pytest.raises(ClientError) as exc:
        other_s3.create_bucket(Bucket=bucket)
    assert error_of(exc) == (409, "BucketAlreadyExists")
    assert bucket not in [b["Name"] for b in other_s3.list_buckets()["Buckets"]]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["private"]
    assert s3.get_object(Bucket=bucket, Key="private")["Body"].read() == b"mine"


def test_a_readers_credential_writes_nothing(cluster, ec2, s3, bucket):
    """Roles hold as on the Swift API (where a reader reads depends on the proxy's access
    settings; writing never)."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    reader = make_client(cluster.proxy_url, *ec2.create("test:s3reader", new_role="reader"))
    for call in (lambda: reader.put_object(Bucket=bucket, Key="r", Body=b"y"),
                 lambda: reader.delete_object(Bucket=bucket, Key="k"),
                 lambda: reader.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k"}]}),
                 lambda: reader.create_bucket(Bucket=f"r-{bucket}")):
        try:
            result = call()
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "AccessDenied"
        else:  # DeleteObjects answers 200 and reports each key's error
            assert [e["Code"] for e in result.get("Errors", [])] == ["AccessDenied"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]
    assert f"r-{bucket}" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_deleted_credential_stops_within_the_revocation_bound(cluster, ec2, bucket):
    bound = 2.0  # [identity] revocation_refresh
    keys = ec2.create("test:tester")
    client = make_client(cluster.proxy_url, *keys)
    for _ in range(4):
        client.head_bucket(Bucket=bucket)  # cached by the workers that served it
    ec2.delete(keys[0])
    deleted_at = time.monotonic()
    while True:
        sent = time.monotonic()
        try:
            client.head_bucket(Bucket=bucket)
        except ClientError as exc:
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 403
            break
        assert sent - deleted_at < bound + 0.5, "still accepted after the bound"
        time.sleep(0.1)
    time.sleep(max(0.0, deleted_at + bound + 0.1 - time.monotonic()))
    for _ in range(6):  # past the bound, every worker refuses it
        with pytest.raises(ClientError) as exc:
            client.list_objects_v2(Bucket=bucket)
        assert error_of(exc) == (403, "InvalidAccessKeyId")


@pytest.mark.parametrize("query, code", [("versioning", "NotImplemented"),
                                         ("tagging", "NotImplemented"),
                                         ("lifecycle", "NotImplemented")])
def test_unbuilt_bucket_features_answer_not_implemented(cluster, tester_keys, bucket, query,
                                                        code):
    url, headers = signed_request(f"{cluster.proxy_url}/{bucket}?{query}", tester_keys)
    resp = requests.get(url, headers=headers, timeout=30)
    assert resp.status_code == 501 and f"<Code>{code}</Code>".encode() in resp.content


def test_unbuilt_object_features_answer_not_implemented(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.put_object_tagging(Bucket=bucket, Key="src",
                              Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    assert error_of(exc) == (501, "NotImplemented")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="dst", Body=b"x", ACL="public-read")
    assert error_of(exc) == (501, "NotImplemented")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["src"]


def test_signature_v2_is_refused_cleanly(cluster, bucket):
    resp = requests.get(f"{cluster.proxy_url}/{bucket}", timeout=30,
                        headers={"Authorization": "AWS someone:c2lnbmF0dXJl",
                                 "Date": "Sun, 06 Dec 2026 12:00:00 GMT"})
    assert resp.status_code == 400 and b"<Code>InvalidRequest</Code>" in resp.content



MALFORMED_AUTH = [
    ({"Authorization": "AWS4-HMAC-SHA256 garbage"}, "", 400, "AuthorizationHeaderMalformed"),
    ({"Authorization": "AWS4-HMAC-SHA256 Credential=k/20260101/us-east-1/ec2/aws4_request, "
                       "SignedHeaders=host, Signature=00"}, "", 400,
     "AuthorizationHeaderMalformed"),
    ({"Authorization": "AWS4-HMAC-SHA256 Credential=k/x, SignedHeaders=host, Signature=00"},
     "", 400, "AuthorizationHeaderMalformed"),
    ({"Authorization": "AWS4-HMAC-SHA256 Credential=k/20260101/us-east-1/s3/aws4_request, "
                       "SignedHeaders=host, Signature=00", "x-amz-date": "yesterday",
      "x-amz-content-sha256": "UNSIGNED-PAYLOAD"}, "", 403, "AccessDenied"),
    ({"Authorization": "AWS4-HMAC-SHA256 Credential=k/20260101/us-east-1/s3/aws4_request, "
                       "SignedHeaders=host, Signature=00", "x-amz-date": "20260101T000000Z",
      "x-amz-content-sha256": "not-a-hash"}, "", 400, "InvalidArgument"),
    ({"Authorization": "AWS4-HMAC-SHA256 Credential=k/20260101/us-east-1/s3/aws4_request, "
                       "SignedHeaders=host, Signature=00", "x-amz-date": "20260101T000000Z"},
     "", 400, "InvalidRequest"),
    ({}, "X-Amz-Algorithm=AWS4-HMAC-SHA256", 400, "AuthorizationQueryParametersError"),
    ({}, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=k%2F20260101%2Fus-east-1%2Fs3"
         "%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=99999999&"
         "X-Amz-SignedHeaders=host&X-Amz-Signature=00", 400,
     "AuthorizationQueryParametersError"),
    ({}, "X-Amz-Algorithm=HMAC-MD5&X-Amz-Credential=k&X-Amz-Date=1&X-Amz-Expires=1&"
         "X-Amz-SignedHeaders=host&X-Amz-Signature=00", 400,
     "AuthorizationQueryParametersError"),
]


@pytest.mark.parametrize("headers, query, status, code", MALFORMED_AUTH)
def test_malformed_auth_is_a_clean_s3_error(cluster, headers, query, status, code):
    url = f"{cluster.proxy_url}/some-bucket/key" + (f"?{query}" if query else "")
    resp = requests.put(url, headers=headers, data=b"x", timeout=30)
    assert (resp.status_code, resp.headers["Content-Type"]) == (status, "application/xml")
    assert f"<Code>{code}</Code>".encode() in resp.content and b"Traceback" not in resp.content


def test_path_that_is_not_utf8(cluster, tester_keys):
    url, headers = signed_request(f"{cluster.proxy_url}/some-bucket/%FF-key", tester_keys)
    resp = requests.get(url, headers=headers, timeout=30)
    assert resp.status_code == 400 and b"<Code>InvalidURI</Code>" in resp.content
    assert b"<Resource>/some-bucket/%FF-key</Resource>" in resp.content
