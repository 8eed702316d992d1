"""One ``soko up --detach`` for the whole e2e session, driven as a user drives it: the CLI,
every service on a free port, the demo key read from what ``soko up`` printed. At the end
``soko down`` must leave no process, mount or loop device behind."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from soko.tools.up import read_state
from tests.support import port_env, require_root, require_tools
from tests.tools.test_up_cli import alive, wait_nothing_left


@dataclasses.dataclass
class AllInOne:
    data_dir: Path
    env: dict[str, str]
    proxy_url: str
    demo_key: str  # the demo user's password, which is also its tempauth key

    def soko(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "soko.tools.cli", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            pytest.fail(f"soko {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
        return done


@pytest.fixture(scope="session")
def allinone(tmp_path_factory) -> Iterator[AllInOne]:
    require_root()
    require_tools("mkfs.xfs", "losetup", "tgtd")
    data_dir = tmp_path_factory.mktemp("soko-up")
    env = port_env(data_dir)
    up = AllInOne(data_dir, env, f"http://127.0.0.1:{env['SOKO_PROXY_PORT']}", "")
    printed = up.soko("up", "--detach").stdout
    state = read_state(data_dir)
    pids = [state["supervisor_pid"]] + [u["pid"] for u in state["units"]]
    try:
        match = re.search(r"demo credentials .*password (\S+)", printed)
        assert match, printed
        up.demo_key = match[1]
        yield up
    finally:
        up.soko("down")
        assert not any(alive(pid) for pid in pids)
        wait_nothing_left(data_dir)
