"""Multipart uploads through boto3: parts in the bucket's hidden ``+segments`` container,
the completed object an SLO over them with S3's multipart ETag, nothing left behind."""

from __future__ import annotations

import hashlib
import os
import uuid

import pytest
import requests
from botocore.exceptions import ClientError

from tests.object.s3.conftest import error_of, signed_request

MiB = 1024 * 1024


def segments(swift, bucket: str) -> list[str] | None:
    """The names in the bucket's segments container, through the Swift API (None: no
    such container)."""
    resp = swift.get(f"{swift.base}/{bucket}+segments?format=json")
    if resp.status_code == 404:
        return None
    assert resp.status_code in (200, 204), resp.text
    return [entry["name"] for entry in (resp.json() if resp.content else [])]


def multipart_etag(*parts: bytes) -> str:
    digests = b"".join(hashlib.md5(part).digest() for part in parts)
    return f'"{hashlib.md5(digests).hexdigest()}-{len(parts)}"'


def test_upload_complete_stream_and_delete(s3, swift, bucket):
    first, last = os.urandom(5 * MiB), os.urandom(1000)
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big/file.bin",
                                        ContentType="application/x-test",
                                        Metadata={"color": "green"})
    upload_id = upload["UploadId"]
    etags = [s3.upload_part(Bucket=bucket, Key="big/file.bin", UploadId=upload_id,
                            PartNumber=number, Body=body)["ETag"]
             for number, body in ((1, first), (2, last))]
    assert etags == [f'"{hashlib.md5(first).hexdigest()}"', f'"{hashlib.md5(last).hexdigest()}"']
    listed = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in listed] == [("big/file.bin", upload_id)]
    parts = s3.list_parts(Bucket=bucket, Key="big/file.bin", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in parts] == [
        (1, etags[0], 5 * MiB), (2, etags[1], 1000)]
    assert f"{bucket}+segments" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="big/file.bin", UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etags[0]},
                                   {"PartNumber": 2, "ETag": etags[1]}]})
    etag = multipart_etag(first, last)
    assert done["ETag"] == etag
    again = s3.complete_multipart_upload(  # a retry (the answer lost) succeeds again
        Bucket=bucket, Key="big/file.bin", UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etags[0]},
                                   {"PartNumber": 2, "ETag": etags[1]}]})
    assert again["ETag"] == etag
    got = s3.get_object(Bucket=bucket, Key="big/file.bin")
    assert got["Body"].read() == first + last
    assert got["ETag"] == etag and got["ContentType"] == "application/x-test"
    assert got["Metadata"] == {"color": "green"}
    ranged = s3.get_object(Bucket=bucket, Key="big/file.bin", Range=f"bytes={5 * MiB - 2}-")
    assert ranged["Body"].read() == first[-2:] + last
    assert s3.head_object(Bucket=bucket, Key="big/file.bin")["ETag"] == etag
    [entry] = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert (entry["Key"], entry["ETag"], entry["Size"]) == ("big/file.bin", etag, 5 * MiB + 1000)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    # the object streams from the parts where they were uploaded; the Swift API sees an SLO
    # with a clean content type
    assert segments(swift, bucket) == [f"big/file.bin/{upload_id}/1",
                                       f"big/file.bin/{upload_id}/2"]
    head = swift.head(f"{swift.base}/{bucket}/big/file.bin")
    assert head.headers["X-Static-Large-Object"] == "True"
    assert head.headers["Content-Type"] == "application/x-test"
    listing = swift.get(f"{swift.base}/{bucket}?format=json").json()
    assert listing[0]["content_type"] == "application/x-test"
    assert listing[0]["s3_etag"] == etag

    s3.delete_object(Bucket=bucket, Key="big/file.bin")
    assert segments(swift, bucket) == []
    s3.delete_bucket(Bucket=bucket)
    assert segments(swift, bucket) is None


def test_parts_left_out_of_complete_are_freed(s3, swift, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    etags = {n: s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=n,
                               Body=b"%d" % n)["ETag"] for n in (1, 2)}
    s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id, MultipartUpload={
        "Parts": [{"PartNumber": 2, "ETag": etags[2]}]})
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"2"
    assert segments(swift, bucket) == [f"k/{upload_id}/2"]
    with pytest.raises(ClientError) as exc:  # completed: no longer an upload
        s3.list_parts(Bucket=bucket, Key="k", UploadId=upload_id)
    assert error_of(exc) == (404, "NoSuchUpload")
    replacing = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="k", UploadId=replacing, PartNumber=1,
                          Body=b"new")["ETag"]
    s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=replacing, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"new"
    assert segments(swift, bucket) == [f"k/{replacing}/1"]  # the replaced upload's are freed


def test_abort_leaves_no_part(s3, swift, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="gone")["UploadId"]
    for number in (1, 2, 3):
        s3.upload_part(Bucket=bucket, Key="gone", UploadId=upload_id, PartNumber=number,
                       Body=b"part")
    s3.abort_multipart_upload(Bucket=bucket, Key="gone", UploadId=upload_id)
    assert segments(swift, bucket) == []
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    for call in (lambda: s3.list_parts(Bucket=bucket, Key="gone", UploadId=upload_id),
                 lambda: s3.abort_multipart_upload(Bucket=bucket, Key="gone",
                                                   UploadId=upload_id)):
        with pytest.raises(ClientError) as exc:
            call()
        assert error_of(exc) == (404, "NoSuchUpload")
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)


def test_bad_completes_and_parts_are_refused_and_leave_nothing(cluster, tester_keys, s3,
                                                               swift, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    etags = [s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=n,
                            Body=b"small part %d" % n)["ETag"] for n in (1, 2)]

    def complete(*parts):
        with pytest.raises(ClientError) as exc:
            s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id,
                                         MultipartUpload={"Parts": [
                                             {"PartNumber": n, "ETag": e} for n, e in parts]})
        return error_of(exc)

    assert complete((1, etags[0]), (3, etags[1])) == (400, "InvalidPart")
    assert complete((1, etags[0]), (2, etags[0])) == (400, "InvalidPart")
    assert complete((2, etags[1]), (1, etags[0])) == (400, "InvalidPartOrder")
    assert complete((1, etags[0]), (2, etags[1])) == (400, "EntityTooSmall")
    url, headers = signed_request(f"{cluster.proxy_url}/{bucket}/k?uploadId={upload_id}",
                                  tester_keys, "POST", b"<CompleteMultipartUpload><Part>")
    resp = requests.post(url, data=b"<CompleteMultipartUpload><Part>", headers=headers,
                         timeout=30)
    assert resp.status_code == 400 and b"<Code>MalformedXML</Code>" in resp.content
    for number in (0, 10001):
        with pytest.raises(ClientError) as exc:
            s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=number,
                           Body=b"x")
        assert error_of(exc) == (400, "InvalidArgument")
    bad_id = uuid.uuid4().hex
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="k", UploadId=bad_id, PartNumber=1, Body=b"x")
    assert error_of(exc) == (404, "NoSuchUpload")
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId="not-an-id",
                                     MultipartUpload={"Parts": [
                                         {"PartNumber": 1, "ETag": etags[0]}]})
    assert error_of(exc) == (404, "NoSuchUpload")
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="k")
    assert error_of(exc)[0] == 404
    assert segments(swift, bucket) == [f"k/{upload_id}", f"k/{upload_id}/1",
                                       f"k/{upload_id}/2"]
    s3.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id)
    assert segments(swift, bucket) == []


def test_upload_part_copy_with_ranges(s3, bucket):
    source = os.urandom(5 * MiB + 300)
    s3.put_object(Bucket=bucket, Key="source", Body=source)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="copied")["UploadId"]
    ranges = [(1, f"bytes=0-{5 * MiB - 1}"), (2, f"bytes={5 * MiB}-{5 * MiB + 299}")]
    etags = [s3.upload_part_copy(Bucket=bucket, Key="copied", UploadId=upload_id,
                                 PartNumber=number, CopySource=f"{bucket}/source",
                                 CopySourceRange=byte_range)["CopyPartResult"]["ETag"]
             for number, byte_range in ranges]
    with pytest.raises(ClientError) as exc:
        s3.upload_part_copy(Bucket=bucket, Key="copied", UploadId=upload_id, PartNumber=3,
                            CopySource=f"{bucket}/source",
                            CopySourceRange=f"bytes=0-{len(source)}")
    assert error_of(exc) == (400, "InvalidArgument")
    s3.complete_multipart_upload(Bucket=bucket, Key="copied", UploadId=upload_id,
                                 MultipartUpload={"Parts": [
                                     {"PartNumber": 1, "ETag": etags[0]},
                                     {"PartNumber": 2, "ETag": etags[1]}]})
    got = s3.get_object(Bucket=bucket, Key="copied")
    assert got["Body"].read() == source
    assert got["ETag"] == multipart_etag(source[:5 * MiB], source[5 * MiB:])


def test_deleting_a_bucket_takes_its_uploads_in_progress(s3, swift, bucket):
    """As s3api does: an empty bucket is deleted with its uploads in progress (their parts
    too); one with objects is not, and its uploads stay."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=b"x")
    s3.put_object(Bucket=bucket, Key="object", Body=b"y")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=bucket)
    assert error_of(exc) == (409, "BucketNotEmpty")
    assert len(segments(swift, bucket)) == 2
    s3.delete_object(Bucket=bucket, Key="object")
    s3.delete_bucket(Bucket=bucket)
    assert segments(swift, bucket) is None
    assert swift.head(f"{swift.base}/{bucket}").status_code == 404
