"""The S3 API through boto3 against a real cluster: objects, metadata, ranges, conditions."""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import zlib

import pytest
import requests
from botocore.exceptions import ClientError

from tests.object.s3.conftest import error_of, signed_request


def test_put_get_head_delete_with_metadata(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="dir/hello.txt", Body=b"hello world",
                        ContentType="text/plain", Metadata={"color": "blue"},
                        CacheControl="max-age=60", ContentDisposition="attachment",
                        ContentEncoding="identity", ContentLanguage="de",
                        Expires="Thu, 01 Dec 2033 16:00:00 GMT")
    assert put["ETag"] == '"5eb63bbbe01eeed093cb22bb8f5acdc3"'
    got = s3.get_object(Bucket=bucket, Key="dir/hello.txt")
    assert got["Body"].read() == b"hello world"
    assert got["ETag"] == put["ETag"] and got["ContentLength"] == 11
    assert got["ContentType"] == "text/plain" and got["Metadata"] == {"color": "blue"}
    assert got["CacheControl"] == "max-age=60" and got["ContentDisposition"] == "attachment"
    assert got["ContentEncoding"] == "identity" and got["ContentLanguage"] == "de"
    assert got["ResponseMetadata"]["HTTPHeaders"]["expires"] == "Thu, 01 Dec 2033 16:00:00 GMT"
    head = s3.head_object(Bucket=bucket, Key="dir/hello.txt")
    assert head["ContentLength"] == 11 and head["Metadata"] == {"color": "blue"}
    s3.delete_object(Bucket=bucket, Key="dir/hello.txt")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="dir/hello.txt")
    assert error_of(exc)[1] == "NoSuchKey"
    s3.delete_object(Bucket=bucket, Key="dir/hello.txt")  # deleting again is fine, as in S3


def test_ranges_and_invalid_range(s3, bucket):
    s3.put_object(Bucket=bucket, Key="r", Body=b"0123456789")
    part = s3.get_object(Bucket=bucket, Key="r", Range="bytes=2-5")
    assert part["Body"].read() == b"2345" and part["ContentRange"] == "bytes 2-5/10"
    assert s3.get_object(Bucket=bucket, Key="r", Range="bytes=-3")["Body"].read() == b"789"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="r", Range="bytes=20-30")
    assert error_of(exc)[1] == "InvalidRange"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416


def test_conditional_reads(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"x")["ETag"]
    modified = s3.head_object(Bucket=bucket, Key="c")["LastModified"]
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"x"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"0000"')
    assert error_of(exc)[1] == "PreconditionFailed"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=modified)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="c",
                       IfUnmodifiedSince=modified - datetime.timedelta(days=1))
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


def test_response_overrides(s3, bucket):
    s3.put_object(Bucket=bucket, Key="o", Body=b"x", ContentType="text/plain")
    got = s3.get_object(Bucket=bucket, Key="o", ResponseContentType="image/png",
                        ResponseContentDisposition='attachment; filename="a.png"',
                        ResponseCacheControl="no-cache")
    assert got["ContentType"] == "image/png" and got["CacheControl"] == "no-cache"
    assert got["ContentDisposition"] == 'attachment; filename="a.png"'


def test_content_md5_is_checked(s3, bucket):
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="m", Body=b"abc",
                      ContentMD5=base64.b64encode(hashlib.md5(b"abd").digest()).decode())
    assert error_of(exc)[1] == "BadDigest"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="m", Body=b"abc", ContentMD5="not-base64!")
    assert error_of(exc)[1] == "InvalidDigest"
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


@pytest.mark.parametrize("size", [100, 3 * 1024 * 1024 + 5])
def test_body_not_matching_the_signed_sha256_leaves_no_object(cluster, tester_keys, bucket,
                                                              s3, size):
    signed_body = os.urandom(size)
    sent = signed_body[:-1] + bytes([signed_body[-1] ^ 1])
    url, headers = signed_request(f"{cluster.proxy_url}/{bucket}/tampered", tester_keys,
                                  "PUT", signed_body)
    resp = requests.put(url, data=sent, headers=headers, timeout=60)
    assert resp.status_code == 400 and b"<Code>XAmzContentSHA256Mismatch</Code>" in resp.content
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="tampered")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    account = "AUTH_" + s3_project_id(s3)
    assert cluster.object_files(account, bucket, "tampered") == []
    url, headers = signed_request(f"{cluster.proxy_url}/{bucket}/tampered", tester_keys,
                                  "PUT", signed_body)
    assert requests.put(url, data=signed_body, headers=headers, timeout=60).status_code == 200


def s3_project_id(s3) -> str:
    return s3.list_buckets()["Owner"]["ID"]


def test_delete_objects_loud_and_quiet(s3, bucket):
    for key in ("a", "b", "c", "d"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    loud = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "b"},
                                                                {"Key": "missing"}]})
    assert sorted(d["Key"] for d in loud["Deleted"]) == ["a", "b", "missing"]
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "c"}], "Quiet": True})
    assert "Deleted" not in quiet and "Errors" not in quiet
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["d"]


def test_malformed_delete_body_deletes_nothing(cluster, tester_keys, s3, bucket):
    s3.put_object(Bucket=bucket, Key="keep", Body=b"x")
    for body in (b"<Delete><Object><Key>keep</Key></Object>", b"<NotDelete/>",
                 b"<Delete></Delete>",
                 b'<!DOCTYPE d [<!ENTITY e "keep">]><Delete><Object><Key>&e;</Key></Object>'
                 b"</Delete>"):
        url, headers = signed_request(f"{cluster.proxy_url}/{bucket}?delete", tester_keys,
                                      "POST", body)
        resp = requests.post(url, data=body, headers=headers, timeout=30)
        assert resp.status_code == 400 and b"<Code>MalformedXML</Code>" in resp.content, body
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["keep"]


ODD_KEYS = ["/leading//double", "sp ace+plus", "q?uery&amp=1", "per%cent", "ünïcödé/日本",
            "tilde~star*paren()", "semi;colon,comma!'"]


def test_odd_keys_sign_store_and_list(s3, swift, bucket):
    for key in ODD_KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == sorted(ODD_KEYS, key=lambda k: k.encode())
    names = [o["name"] for o in swift.get(f"{swift.base}/{bucket}?format=json").json()]
    assert names == listed


def test_checksum_headers_are_checked(cluster, tester_keys, s3, bucket):
    for algorithm in ("CRC32", "SHA1", "SHA256"):  # botocore computes and sends them
        s3.put_object(Bucket=bucket, Key=f"sum-{algorithm}", Body=b"data",
                      ChecksumAlgorithm=algorithm)
    wrong = base64.b64encode(zlib.crc32(b"datA").to_bytes(4, "big")).decode()
    url, headers = signed_request(f"{cluster.proxy_url}/{bucket}/bad-sum", tester_keys, "PUT",
                                  b"data", {"x-amz-checksum-crc32": wrong})
    resp = requests.put(url, data=b"data", headers=headers, timeout=30)
    assert resp.status_code == 400 and b"<Code>BadDigest</Code>" in resp.content
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["sum-CRC32", "sum-SHA1", "sum-SHA256"]


ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")


def test_every_checksum_is_checked_stored_and_returned(cluster, tester_keys, s3, bucket):
    for algorithm in ALGORITHMS:  # botocore (with awscrt) computes and sends each
        sent = s3.put_object(Bucket=bucket, Key=f"sum-{algorithm}", Body=b"data",
                             ChecksumAlgorithm=algorithm)
        got = s3.get_object(Bucket=bucket, Key=f"sum-{algorithm}", ChecksumMode="ENABLED")
        assert got[f"Checksum{algorithm}"] == sent[f"Checksum{algorithm}"]
        assert got["Body"].read() == b"data"  # botocore checked the body against it too
        head = s3.head_object(Bucket=bucket, Key=f"sum-{algorithm}", ChecksumMode="ENABLED")
        assert head[f"Checksum{algorithm}"] == sent[f"Checksum{algorithm}"]
        assert f"Checksum{algorithm}" not in s3.head_object(Bucket=bucket,
                                                             Key=f"sum-{algorithm}")
    for name, wrong in (("crc32c", "AAAAAA=="), ("crc64nvme", "AAAAAAAAAAA=")):
        url, headers = signed_request(f"{cluster.proxy_url}/{bucket}/bad-{name}", tester_keys,
                                      "PUT", b"data", {f"x-amz-checksum-{name}": wrong})
        resp = requests.put(url, data=b"data", headers=headers, timeout=30)
        assert resp.status_code == 400 and b"<Code>BadDigest</Code>" in resp.content
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == sorted(f"sum-{algorithm}" for algorithm in ALGORITHMS)


def test_part_checksums_are_checked_and_named_in_complete(s3, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32C"
                                           )["UploadId"]
    parts = []
    first = os.urandom(5 * 1024 * 1024)
    for number, body in ((1, first), (2, b"two")):
        sent = s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=number,
                              Body=body, ChecksumAlgorithm="CRC32C")
        parts.append({"PartNumber": number, "ETag": sent["ETag"],
                      "ChecksumCRC32C": sent["ChecksumCRC32C"]})
    wrong = [parts[0], {**parts[1], "ChecksumCRC32C": parts[0]["ChecksumCRC32C"]}]
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id,
                                     MultipartUpload={"Parts": wrong})
    assert error_of(exc) == (400, "InvalidPart")
    s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id,
                                 MultipartUpload={"Parts": parts})
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == first + b"two"
