"""aws-chunked uploads (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` and
``STREAMING-UNSIGNED-PAYLOAD-TRAILER``), encoded here as the AWS SDKs encode them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import zlib

import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

EMPTY = hashlib.sha256(b"").hexdigest()


class StreamingSigner(S3SigV4Auth):
    """botocore's signer with a streaming payload declared (botocore itself never does this
    over plain HTTP)."""

    def __init__(self, keys, payload: str):
        super().__init__(Credentials(*keys), "s3", "us-east-1")
        self.streaming = payload

    def payload(self, request):
        return self.streaming


def signing_key(secret: str, date: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, "us-east-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def chunked_put(url, keys, chunks: list[bytes], *, tamper: int | None = None,
                declared: int | None = None):
    decoded = sum(map(len, chunks)) if declared is None else declared
    headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(decoded)}
    request = AWSRequest(method="PUT", url=url, headers=headers)
    StreamingSigner(keys, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD").add_auth(request)
    signed = dict(request.headers)
    amz_date = signed["X-Amz-Date"]
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    key = signing_key(keys[1], amz_date[:8])
    previous = signed["Authorization"].rsplit("Signature=", 1)[1]
    body = b""
    for index, data in enumerate([*chunks, b""]):
        to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous, EMPTY,
                             hashlib.sha256(data).hexdigest()])
        previous = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if index == tamper and data:
            data = data[:-1] + bytes([data[-1] ^ 1])
        elif index == tamper:  # the final chunk: its signature
            previous = "0" * 64
        body += f"{len(data):x};chunk-signature={previous}\r\n".encode() + data + b"\r\n"
    return requests.put(url, data=body, headers=signed, timeout=60)


def trailer_put(url, keys, data: bytes, checksum: bytes):
    headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
               "x-amz-trailer": "x-amz-checksum-crc32"}
    request = AWSRequest(method="PUT", url=url, headers=headers)
    StreamingSigner(keys, "STREAMING-UNSIGNED-PAYLOAD-TRAILER").add_auth(request)
    body = (f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\nx-amz-checksum-crc32:"
            + base64.b64encode(checksum) + b"\r\n\r\n")
    return requests.put(url, data=body, headers=dict(request.headers), timeout=60)


def assert_absent(s3, bucket, key):
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key=key)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_signed_chunks(cluster, tester_keys, s3, bucket):
    chunks = [os.urandom(65536), os.urandom(65536), b"0123456789"]
    url = f"{cluster.proxy_url}/{bucket}/chunked"
    resp = chunked_put(url, tester_keys, chunks)
    assert resp.status_code == 200, resp.text
    whole = b"".join(chunks)
    assert resp.headers["ETag"] == f'"{hashlib.md5(whole).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="chunked")
    assert got["Body"].read() == whole and "ContentEncoding" not in got


@pytest.mark.parametrize("tamper, declared, code", [(1, None, "SignatureDoesNotMatch"),
                                                    (2, None, "SignatureDoesNotMatch"),
                                                    (None, 100, "IncompleteBody"),
                                                    (None, 200_000, "IncompleteBody")])
def test_bad_chunked_bodies_leave_no_object(cluster, tester_keys, s3, bucket, tamper, declared,
                                            code):
    url = f"{cluster.proxy_url}/{bucket}/bad"
    resp = chunked_put(url, tester_keys, [os.urandom(65536), os.urandom(1000)],
                       tamper=tamper, declared=declared)
    assert f"<Code>{code}</Code>" in resp.text and 400 <= resp.status_code < 500
    assert_absent(s3, bucket, "bad")


def test_unsigned_chunks_with_a_checksum_trailer(cluster, tester_keys, s3, bucket):
    data = os.urandom(5000)
    crc = zlib.crc32(data).to_bytes(4, "big")
    url = f"{cluster.proxy_url}/{bucket}/trailer"
    assert trailer_put(url, tester_keys, data, crc).status_code == 200
    assert s3.get_object(Bucket=bucket, Key="trailer")["Body"].read() == data
    wrong = trailer_put(f"{cluster.proxy_url}/{bucket}/wrong", tester_keys, data, b"\0" * 4)
    assert wrong.status_code == 400 and "<Code>BadDigest</Code>" in wrong.text
    assert_absent(s3, bucket, "wrong")
