"""The aws CLI, unchanged, against soko's S3 API: high-level ``aws s3`` and ``aws s3api``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def aws(cluster, tester_keys, tmp_path_factory):
    home = tmp_path_factory.mktemp("aws-home")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": tester_keys[0],
           "AWS_SECRET_ACCESS_KEY": tester_keys[1], "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_CONFIG_FILE": str(home / "config"),
           "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"), "HOME": str(home),
           "AWS_EC2_METADATA_DISABLED": "true", "AWS_MAX_ATTEMPTS": "1"}
    aws_bin = str(Path(sys.executable).with_name("aws"))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([aws_bin, "--endpoint-url", cluster.proxy_url, *args], env=env,
                              capture_output=True, text=True, timeout=120)

    return run


def test_aws_s3_cp_sync_ls_rm_and_s3api(aws, s3, bucket, tmp_path):
    """Each aws run costs seconds (the CLI's start-up): few runs, checked with boto3."""
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "one.txt").write_bytes(b"one")
    (source / "sub" / "two.bin").write_bytes(os.urandom(300_000))
    copied = aws("s3", "cp", str(source / "one.txt"), f"s3://{bucket}/one.txt", "--metadata",
                 "color=blue")
    assert copied.returncode == 0, copied.stderr
    synced = aws("s3", "sync", str(source), f"s3://{bucket}/tree")
    assert synced.returncode == 0, synced.stderr
    listing = aws("s3", "ls", "--recursive", f"s3://{bucket}")
    assert listing.returncode == 0, listing.stderr
    assert {line.split()[-1] for line in listing.stdout.splitlines()} == {
        "one.txt", "tree/one.txt", "tree/sub/two.bin"}
    back = tmp_path / "back"
    fetched = aws("s3", "cp", "--recursive", f"s3://{bucket}/tree", str(back))
    assert fetched.returncode == 0, fetched.stderr
    assert (back / "sub" / "two.bin").read_bytes() == (source / "sub" / "two.bin").read_bytes()
    removed = aws("s3", "rm", "--recursive", f"s3://{bucket}/tree")
    assert removed.returncode == 0, removed.stderr
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["one.txt"]
    head = aws("s3api", "head-object", "--bucket", bucket, "--key", "one.txt")
    assert head.returncode == 0, head.stderr
    assert json.loads(head.stdout)["Metadata"] == {"color": "blue"}


def test_aws_s3_cp_of_50_mib_goes_in_parts_and_comes_back_identical(aws, s3, swift, bucket,
                                                                     tmp_path):
    """The CLI splits a file above its 8 MiB threshold into 8 MiB parts by itself."""
    source = tmp_path / "fifty.bin"
    source.write_bytes(os.urandom(50 * 1024 * 1024))
    copied = aws("s3", "cp", str(source), f"s3://{bucket}/fifty.bin")
    assert copied.returncode == 0, copied.stderr
    head = s3.head_object(Bucket=bucket, Key="fifty.bin")
    assert head["ContentLength"] == 50 * 1024 * 1024 and head["ETag"].endswith('-7"')
    assert len(swift.get(f"{swift.base}/{bucket}+segments?format=json").json()) == 7
    back = tmp_path / "back.bin"
    fetched = aws("s3", "cp", f"s3://{bucket}/fifty.bin", str(back))
    assert fetched.returncode == 0, fetched.stderr
    assert back.read_bytes() == source.read_bytes()
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
