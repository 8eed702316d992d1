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


def make_app(config):
    return make_base_app()


def bootstrap(config):
    return ["sample password: s3cret"]


def teardown(config):
    (config.data_dir / "torn-down").write_text("yes")


def serve_argv(port: int, data_dir) -> list[str]:
    """Serves the sample app on ``port`` with soko's launcher, as ``soko serve`` does."""
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); "
            f"from tests.tools.sample_service import main; main({port}, {str(data_dir)!r})")
    return [sys.executable, "-c", code]


def main(port: int, data_dir: str) -> None:
    from soko.common.config import load_config
    from soko.common.serve import serve

    config = load_config(None, {"sample": SampleSection}, data_dir=data_dir,
                         environ={"SOKO_SAMPLE_PORT": str(port)})
    serve(SERVICE, config)


def units(config):
    section = config.section("sample")
    argv = serve_argv(section.port, config.data_dir)
    if section.crash:
        argv = [sys.executable, "-c", "import sys; print('cannot bind: boom'); sys.exit(3)"]
    endpoint = section.endpoint
    return [Unit("sample", argv, endpoint=endpoint, health_url=f"{endpoint}/healthcheck")]


SERVICE = ServiceSpec(
    name="sample",
    summary="supervisor test service",
    section=SampleSection,
    app_factory="tests.tools.sample_service:make_app",
    bootstrap="tests.tools.sample_service:bootstrap",
    units="tests.tools.sample_service:units",
    teardown="tests.tools.sample_service:teardown",
)
