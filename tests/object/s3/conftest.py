"""S3 fixtures: EC2 credentials for the session cluster's two projects, and boto3 clients.

The credentials are made with identity's own store (the cluster runs no identity process:
its proxy reads the identity database and keys, as it does for tokens).
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.object.test_cluster import Api


def error_of(exc: pytest.ExceptionInfo) -> tuple[int, str]:
    response = exc.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def make_client(url: str, access: str, secret: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=access,
        aws_secret_access_key=secret,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 1, "mode": "standard"}))


class Credentials:
    """Creates and deletes EC2 credentials in the cluster's identity database."""

    def __init__(self, cluster):
        self.cluster = cluster

    def store(self):
        from soko.common.db import make_engine
        from soko.identity.ec2 import Ec2Credentials
        from soko.identity.service import db_url

        engine = make_engine(db_url(self.cluster.config))
        return engine, Ec2Credentials.from_config(self.cluster.config, engine=engine)

    def create(self, user: str, new_role: str | None = None) -> tuple[str, str]:
        """A credential of ``project:name`` (a new user with ``new_role`` if given)."""
        from soko.identity.manager import IdentityManager

        engine, store = self.store()
        try:
            manager = IdentityManager.from_config(self.cluster.config, engine=engine)
            project, _, name = user.partition(":")
            if new_role is not None:
                manager.create_user(name, "password-of-" + name, default_project=project)
                manager.grant_role(project, name, new_role)
            record = store.create(manager.get_user(name)["id"],
                                  manager.get_project(project)["id"])
        finally:
            engine.dispose()  # no open file may keep the XFS mount busy at the end
        blob = json.loads(record["blob"])
        return blob["access"], blob["secret"]

    def delete(self, access: str) -> None:
        from soko.identity.ec2 import credential_id

        engine, store = self.store()
        try:
            store.delete(credential_id(access))
        finally:
            engine.dispose()


@pytest.fixture(scope="session")
def ec2(cluster) -> Credentials:
    return Credentials(cluster)


@pytest.fixture(scope="session")
def tester_keys(ec2) -> tuple[str, str]:
    return ec2.create("test:tester")


@pytest.fixture(scope="session")
def s3(cluster, tester_keys):
    """boto3 as test:tester."""
    return make_client(cluster.proxy_url, *tester_keys)


@pytest.fixture(scope="session")
def other_s3(cluster, ec2):
    """boto3 as other:otheruser (another project)."""
    return make_client(cluster.proxy_url, *ec2.create("other:otheruser"))


@pytest.fixture(scope="module")
def swift(cluster) -> Api:
    """The Swift API as test:tester, on the same account the S3 credential maps to."""
    return Api(*cluster.auth())


@pytest.fixture
def bucket(s3) -> str:
    name = f"b-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return name


def signed_request(url: str, keys: tuple[str, str], method: str = "GET", body: bytes = b"",
                   headers: dict | None = None) -> tuple[str, dict]:
    """(url, headers) signed by botocore's own SigV4 signer, for requests sent by hand."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    S3SigV4Auth(Credentials(*keys), "s3", "us-east-1").add_auth(request)
    return request.url, dict(request.headers)


@pytest.fixture(scope="module")
def small_parts_s3(cluster, tester_keys, tmp_path_factory):
    """boto3 as test:tester against an S3 endpoint served from this process (the session
    cluster's config, storage nodes and identity) whose multipart parts may be as small as
    1 byte (``[proxy] s3_min_part_size``) and whose SLO manifests name at most 10 segments
    (``slo_max_manifest_segments``): an upload of more parts than one manifest holds is a
    few dozen tiny ones, not 1001 parts of 5 MiB. (Start refuses a limit below 100, under
    which 10000 parts do not fit in two levels; the layout is the same at 10, so the test
    sets it past the check.)"""
    import tomllib

    from soko.common import services
    from soko.common.config import dump_toml
    from soko.common.db import make_engine
    from soko.identity.manager import IdentityManager
    from soko.identity.service import db_url
    from soko.identity.tempauth import TempAuth
    from soko.identity.tokens import FernetTokenValidator
    from soko.object.proxy.app import make_app
    from tests.support import served

    raw = tomllib.loads(cluster.config_path.read_text())
    raw["proxy"].update(s3_min_part_size=1)
    path = tmp_path_factory.mktemp("s3proxy") / "soko.toml"
    path.write_text(dump_toml(raw))
    config = services.load(path, cluster.data_dir)
    config.section("proxy").slo_max_manifest_segments = 10
    engine = make_engine(db_url(config))
    app = make_app(config, validator=FernetTokenValidator.from_config(config, engine=engine),
                   tempauth=TempAuth(IdentityManager.from_config(config, engine=engine)))
    try:
        with served(app) as url:
            yield make_client(url, *tester_keys)
    finally:  # no open file may keep the session's XFS mount busy
        engine.dispose()
        if app._credentials is not None:
            app._credentials.engine.dispose()
