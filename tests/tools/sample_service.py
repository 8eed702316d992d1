"""A minimal service for supervisor tests: the shared app factory under a real gunicorn."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from soko.common.app import make_base_app
from soko.common.config import ServerSection
from soko.common.service import ServiceSpec, Unit

REPO = Path(__file__).resolve().parents[2]


@dataclasses.dataclass
class SampleSection(ServerSection):
    crash: bool = False


def make_wsgi():
    return make_base_app()


def bootstrap(config):
    return ["sample password: s3cret"]


def teardown(config):
    (config.data_dir / "torn-down").write_text("yes")


def units(config):
    section = config.section("sample")
    argv = [sys.executable, "-m", "gunicorn", "--pythonpath", str(REPO), "-w", "2",
            "-b", f"{section.bind_ip}:{section.port}", "tests.tools.sample_service:make_wsgi()"]
    if section.crash:
        argv = [sys.executable, "-c", "import sys; print('cannot bind: boom'); sys.exit(3)"]
    endpoint = section.endpoint
    return [Unit("sample", argv, endpoint=endpoint, health_url=f"{endpoint}/healthcheck")]


SERVICE = ServiceSpec(
    name="sample",
    summary="supervisor test service",
    section=SampleSection,
    app_factory="tests.tools.sample_service:make_wsgi",
    bootstrap="tests.tools.sample_service:bootstrap",
    units="tests.tools.sample_service:units",
    teardown="tests.tools.sample_service:teardown",
)
