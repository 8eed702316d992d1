"""boto3's resource API (``boto3.resource('s3')``) unchanged against soko's S3 API."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module")
def s3r(cluster, tester_keys):
    import boto3
    from botocore.config import Config

    return boto3.resource(
        "s3", endpoint_url=cluster.proxy_url, region_name="us-east-1",
        aws_access_key_id=tester_keys[0], aws_secret_access_key=tester_keys[1],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 1, "mode": "standard"}))


def test_objects_put_get_filter_and_copy_from(s3r, bucket):
    b = s3r.Bucket(bucket)
    for key in ("a/1", "a/2", "b/1"):
        b.Object(key).put(Body=key.encode(), Metadata={"name": key.replace("/", "-")})
    assert [o.key for o in b.objects.filter(Prefix="a/")] == ["a/1", "a/2"]
    assert [o.size for o in b.objects.all()] == [3, 3, 3]
    got = s3r.Object(bucket, "a/2").get()
    assert got["Body"].read() == b"a/2" and got["Metadata"] == {"name": "a-2"}
    copy = s3r.Object(bucket, "c/copy")
    copy.copy_from(CopySource={"Bucket": bucket, "Key": "b/1"})
    assert copy.get()["Body"].read() == b"b/1" and copy.metadata == {"name": "b-1"}
    b.objects.filter(Prefix="a/").delete()
    assert [o.key for o in b.objects.all()] == ["b/1", "c/copy"]


def test_upload_file_above_the_multipart_threshold(s3r, bucket, tmp_path):
    from boto3.s3.transfer import TransferConfig

    MiB = 1024 * 1024
    source = tmp_path / "up.bin"
    source.write_bytes(os.urandom(11 * MiB))
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB,
                            max_concurrency=2)
    b = s3r.Bucket(bucket)
    b.upload_file(str(source), "up.bin", Config=config)
    obj = s3r.Object(bucket, "up.bin")
    assert obj.content_length == 11 * MiB and obj.e_tag.endswith('-3"')
    back = tmp_path / "back.bin"
    b.download_file("up.bin", str(back), Config=config)
    assert back.read_bytes() == source.read_bytes()
    copy = s3r.Object(bucket, "up-copy.bin")  # a copy of a multipart object: one object
    copy.copy_from(CopySource={"Bucket": bucket, "Key": "up.bin"})
    assert copy.content_length == 11 * MiB and "-" not in copy.e_tag
