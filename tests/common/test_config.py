from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from soko.common.config import ConfigError, ServerSection, dump_toml, load_config


@dataclasses.dataclass
class DemoSection(ServerSection):
    port: int = 7000
    pool_size_gb: int = 10
    backend: str = "reflink"
    quiesce_hooks: list[str] = dataclasses.field(default_factory=list)
    compress: bool = True
    database_url: str | None = None


SECTIONS = {"demo": DemoSection}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "soko.toml"
    path.write_text(text)
    return path


def test_no_file_gives_defaults():
    config = load_config(None, SECTIONS, environ={})
    demo = config.section("demo")
    assert (demo.port, demo.pool_size_gb, demo.backend, demo.workers) == (7000, 10, "reflink", 2)
    assert config.data_dir == Path(".soko").absolute()


def test_values_from_file(tmp_path):
    path = write(tmp_path, '[demo]\nport = 9000\nquiesce_hooks = ["a", "b"]\ncompress = false\n')
    demo = load_config(path, SECTIONS, environ={}).section("demo")
    assert (demo.port, demo.quiesce_hooks, demo.compress) == (9000, ["a", "b"], False)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('[demo]\nport = "abc"\n', "[demo] port: expected a number, got 'abc'"),
        ("[demo]\npool_size_gb = 1.5\n", "[demo] pool_size_gb: expected a whole number"),
        ("[demo]\ncompress = 1\n", "[demo] compress: expected true or false"),
        ("[demo]\nbogus = 1\n", "[demo] bogus: unknown key"),
        ("[nosuch]\nx = 1\n", "[nosuch]: unknown section"),
        ("[demo]\nport = 70000\n", "[demo] port: 70000 is not a TCP port"),
        ("[demo]\nworker_class = 'eventlet'\n", "[demo] worker_class: must be 'gthread'"),
        ("[demo]\nclient_timeout = 0\n", "[demo] client_timeout: must be more than 0"),
        ("[demo]\nthreads = 8\nmax_clients = 4\n", "[demo] max_clients: must be at least threads"),
        ("[demo\n", "not valid TOML"),
    ],
)
def test_bad_values_name_the_key(tmp_path, text, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), SECTIONS, environ={})
    assert fragment in str(info.value)


def test_environment_overrides_file(tmp_path):
    path = write(tmp_path, "[demo]\nport = 9000\n")
    env = {"SOKO_DEMO_PORT": "9100", "SOKO_DEMO_COMPRESS": "no", "SOKO_DEMO_QUIESCE_HOOKS": "x, y"}
    demo = load_config(path, SECTIONS, environ=env).section("demo")
    assert (demo.port, demo.compress, demo.quiesce_hooks) == (9100, False, ["x", "y"])


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError, match=r"\$SOKO_DEMO_PORT.*expected a number"):
        load_config(None, SECTIONS, environ={"SOKO_DEMO_PORT": "eighty"})


def test_data_dir_defaults_to_the_config_files_folder(tmp_path):
    path = write(tmp_path, "")
    assert load_config(path, SECTIONS, environ={}).data_dir == tmp_path
    env = {"SOKO_DATA_DIR": str(tmp_path / "elsewhere")}
    assert load_config(path, SECTIONS, environ=env).data_dir == tmp_path / "elsewhere"


def test_dumped_defaults_load_back(tmp_path):
    values = dataclasses.asdict(DemoSection(quiesce_hooks=['fsfreeze -f "/mnt/a b"']))
    path = write(tmp_path, dump_toml({"demo": values}))
    assert load_config(path, SECTIONS, environ={}).section("demo") == DemoSection(
        quiesce_hooks=['fsfreeze -f "/mnt/a b"']
    )
