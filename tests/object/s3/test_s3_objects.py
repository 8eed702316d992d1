"""The S3 API through boto3 against a real cluster: objects, metadata, ranges, conditions."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError


def error_code(exc: pytest.ExceptionInfo) -> str:
    return exc.value.response["Error"]["Code"]


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
    assert error_code(exc) == "NoSuchKey"
    s3.delete_object(Bucket=bucket, Key="dir/hello.txt")  # deleting again is fine, as in S3
