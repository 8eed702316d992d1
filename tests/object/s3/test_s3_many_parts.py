"""Multipart uploads of more parts than an SLO manifest holds, and reads of one part
(``?partNumber``), on an in-process endpoint whose parts may be tiny and whose manifests
hold 10 segments (``small_parts_s3``: AWS's 10000 parts over Swift's 1000, scaled down)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from tests.object.s3.conftest import error_of
from tests.object.s3.test_s3_multipart import multipart_etag, segments


@pytest.fixture
def small_bucket(small_parts_s3) -> str:
    name = f"b-{uuid.uuid4().hex[:10]}"
    small_parts_s3.create_bucket(Bucket=name)
    return name


def upload(s3, bucket: str, key: str, parts: list[bytes]) -> str:
    """A completed upload of ``parts`` (sent 8 at a time); its ETag."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]

    def send(number: int) -> dict:
        answer = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                PartNumber=number, Body=parts[number - 1])
        return {"PartNumber": number, "ETag": answer["ETag"]}

    with ThreadPoolExecutor(8) as pool:
        listed = list(pool.map(send, range(1, len(parts) + 1)))
    return s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                        MultipartUpload={"Parts": listed})["ETag"]


def test_an_upload_of_more_parts_than_a_manifest_holds_completes_reads_and_deletes(
        small_parts_s3, swift, small_bucket):
    s3, bucket = small_parts_s3, small_bucket
    parts = [f"<{n:04d}>".encode() for n in range(1, 23)] + [b"!"]  # 23 parts: 10+10+3
    etag = upload(s3, bucket, "many", parts)
    assert etag == multipart_etag(*parts)
    whole = b"".join(parts)
    got = s3.get_object(Bucket=bucket, Key="many")
    assert (got["Body"].read(), got["ETag"], got["ContentLength"]) == (whole, etag, len(whole))
    # a range across the two sub-manifests, and single parts on either side of it
    ranged = s3.get_object(Bucket=bucket, Key="many", Range="bytes=50-70")
    assert ranged["Body"].read() == whole[50:71]
    for number in (1, 10, 11, 23):
        part = s3.get_object(Bucket=bucket, Key="many", PartNumber=number)
        first = 6 * (number - 1)
        assert part["Body"].read() == parts[number - 1]
        assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert part["PartsCount"] == 23 and part["ETag"] == etag
        assert part["ContentRange"] == \
            f"bytes {first}-{first + len(parts[number - 1]) - 1}/{len(whole)}"
    head = s3.head_object(Bucket=bucket, Key="many", PartNumber=12)
    assert (head["ContentLength"], head["PartsCount"], head["ContentRange"]) == (
        6, 23, f"bytes 66-71/{len(whole)}")
    [entry] = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert (entry["ETag"], entry["Size"]) == (etag, len(whole))
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    s3.delete_object(Bucket=bucket, Key="many")
    assert segments(swift, bucket) == []  # every part and sub-manifest went with it


def test_part_number_reads(small_parts_s3, small_bucket):
    s3, bucket = small_parts_s3, small_bucket
    parts = [b"first part", b"second", b"3"]
    etag = upload(s3, bucket, "three", parts)
    got = s3.get_object(Bucket=bucket, Key="three", PartNumber=2)
    assert got["Body"].read() == b"second"
    assert (got["ContentRange"], got["PartsCount"], got["ETag"]) == ("bytes 10-15/17", 3, etag)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="three", PartNumber=4)
    assert error_of(exc) == (416, "InvalidPartNumber")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="three", PartNumber=1, Range="bytes=0-1")
    assert error_of(exc) == (400, "InvalidRequest")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="three", PartNumber=10001)
    assert error_of(exc) == (400, "InvalidArgument")
    # an object not uploaded in parts is its own part 1
    s3.put_object(Bucket=bucket, Key="plain", Body=b"hello")
    got = s3.get_object(Bucket=bucket, Key="plain", PartNumber=1)
    assert got["Body"].read() == b"hello"
    assert (got["ResponseMetadata"]["HTTPStatusCode"], got["ContentRange"]) == (
        206, "bytes 0-4/5")
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="plain", PartNumber=2)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="nothing", PartNumber=1)
    assert error_of(exc) == (404, "NoSuchKey")


def test_overwriting_a_completed_upload_frees_its_parts_unless_the_bucket_keeps_versions(
        small_parts_s3, swift, small_bucket):
    s3, bucket = small_parts_s3, small_bucket
    s3.put_object(Bucket=bucket, Key="plain", Body=b"copied")
    for overwrite in (lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"put"),
                      lambda: s3.copy_object(Bucket=bucket, Key="k",
                                             CopySource={"Bucket": bucket, "Key": "plain"}),
                      lambda: upload(s3, bucket, "k", [b"new", b"!"])):
        before = set(segments(swift, bucket) or [])
        upload(s3, bucket, "k", [b"old", b"parts", b"."])
        parts = set(segments(swift, bucket)) - before
        overwrite()
        assert set(segments(swift, bucket)) & parts == set(), overwrite
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"new!"
    assert len(segments(swift, bucket)) == 2  # the last upload's parts only
    # a bucket that keeps versions (made so through the Swift API before this endpoint
    # cached its info): the archived version still reads from its parts
    versioned, archive = f"{bucket}-v", f"{bucket}-versions"
    assert swift.put(f"{swift.base}/{archive}").status_code == 201
    assert swift.put(f"{swift.base}/{versioned}",
                     headers={"X-Versions-Location": archive}).status_code == 201
    upload(s3, versioned, "v", [b"version", b" one"])
    parts = segments(swift, versioned)
    s3.put_object(Bucket=versioned, Key="v", Body=b"two")
    assert segments(swift, versioned) == parts
    [old] = [entry["name"] for entry in swift.get(f"{swift.base}/{archive}?format=json").json()]
    assert swift.get(f"{swift.base}/{archive}/{old}").content == b"version one"


def test_a_manifest_limit_too_small_for_s3s_parts_is_refused_at_start(tmp_path):
    from soko.common import services
    from soko.common.config import ConfigError, dump_toml

    path = tmp_path / "soko.toml"
    path.write_text(dump_toml({"proxy": {"slo_max_manifest_segments": 99}}))
    with pytest.raises(ConfigError, match=r"\[proxy\] slo_max_manifest_segments: must be at "
                                          r"least 100 \(an S3 multipart upload of 10000 parts"):
        services.load(path, tmp_path)
    path.write_text(dump_toml({"proxy": {"slo_max_manifest_segments": 100}}))
    assert services.load(path, tmp_path).section("proxy").slo_max_manifest_segments == 100
