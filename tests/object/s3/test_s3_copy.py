"""CopyObject through boto3: metadata directives, conditional copies, odd sources."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from botocore.exceptions import ClientError

from tests.object.s3.conftest import error_of


@pytest.fixture
def source(s3, bucket) -> str:
    s3.put_object(Bucket=bucket, Key="dir/sö urce+1", Body=b"copied bytes",
                  ContentType="text/plain", Metadata={"color": "blue"},
                  ContentDisposition="inline")
    return "dir/sö urce+1"


def test_copy_keeps_or_replaces_metadata(s3, bucket, source):
    done = s3.copy_object(Bucket=bucket, Key="kept", CopySource={"Bucket": bucket,
                                                                 "Key": source})
    assert done["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(b"copied bytes").hexdigest()}"'
    kept = s3.get_object(Bucket=bucket, Key="kept")
    assert kept["Body"].read() == b"copied bytes"
    assert (kept["ContentType"], kept["Metadata"], kept["ContentDisposition"]) == (
        "text/plain", {"color": "blue"}, "inline")
    s3.copy_object(Bucket=bucket, Key="replaced", CopySource=f"{bucket}/{source}",
                   MetadataDirective="REPLACE", ContentType="application/json",
                   Metadata={"shape": "round"})
    replaced = s3.head_object(Bucket=bucket, Key="replaced")
    assert (replaced["ContentType"], replaced["Metadata"]) == ("application/json",
                                                               {"shape": "round"})
    assert "ContentDisposition" not in replaced


def test_copy_onto_itself_needs_replace(s3, bucket, source):
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key=source, CopySource={"Bucket": bucket, "Key": source})
    assert error_of(exc) == (400, "InvalidRequest")
    s3.copy_object(Bucket=bucket, Key=source, CopySource={"Bucket": bucket, "Key": source},
                   MetadataDirective="REPLACE", Metadata={"color": "red"})
    got = s3.get_object(Bucket=bucket, Key=source)
    assert got["Body"].read() == b"copied bytes" and got["Metadata"] == {"color": "red"}


def test_conditional_copies(s3, bucket, source):
    etag = s3.head_object(Bucket=bucket, Key=source)["ETag"]
    past = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    failing = [{"CopySourceIfMatch": '"0123456789abcdef0123456789abcdef"'},
               {"CopySourceIfNoneMatch": etag},
               {"CopySourceIfModifiedSince": future},
               {"CopySourceIfUnmodifiedSince": past}]
    for condition in failing:
        with pytest.raises(ClientError) as exc:
            s3.copy_object(Bucket=bucket, Key="target", CopySource=f"{bucket}/{source}",
                           **condition)
        assert error_of(exc) == (412, "PreconditionFailed"), condition
    assert "target" not in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    for condition in ({"CopySourceIfMatch": etag}, {"CopySourceIfModifiedSince": past},
                      {"CopySourceIfMatch": etag, "CopySourceIfUnmodifiedSince": past}):
        s3.copy_object(Bucket=bucket, Key="target", CopySource=f"{bucket}/{source}",
                       **condition)


def test_bad_copy_sources(s3, bucket, source):
    cases = [({"Bucket": bucket, "Key": source, "VersionId": "3HL4kqtJlcpXroDTDmJ"},
              (400, "InvalidArgument")),
             ({"Bucket": bucket, "Key": "missing"}, (404, "NoSuchKey")),
             ({"Bucket": "no-such-bucket-here", "Key": "k"}, (404, "NoSuchBucket"))]
    for copy_source, expected in cases:
        with pytest.raises(ClientError) as exc:
            s3.copy_object(Bucket=bucket, Key="target", CopySource=copy_source)
        assert error_of(exc) == expected, copy_source
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="target", CopySource=f"{bucket}/{source}",
                       MetadataDirective="MERGE")
    assert error_of(exc)[0] == 400
    assert "target" not in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
