"""Loading br_netfilter where the host has not. This machine's kernel has it built in and
loads no modules, so ``modprobe`` can't run for real here: a stand-in command plays it
(makes the switches, as the module does, at 1), against a scratch switches directory."""

from __future__ import annotations

import pytest

from soko.net.drivers.bridge_netfilter import NAMES, BridgeNetfilterError, ensure_loaded


def stand_in_modprobe(switches) -> tuple[str, ...]:
    made = " && ".join(f"echo 1 > {switches / name}" for name in NAMES)
    return ("sh", "-c", f"mkdir {switches} && {made}")


def test_soko_loads_it_and_leaves_the_host_forwarding_as_before(tmp_path):
    switches = tmp_path / "bridge"
    assert ensure_loaded(switches, stand_in_modprobe(switches))
    assert {name: (switches / name).read_text() for name in NAMES} == dict.fromkeys(NAMES, "0")


def test_a_loaded_module_keeps_the_hosts_switches(tmp_path):
    switches = tmp_path / "bridge"
    switches.mkdir()
    (switches / NAMES[0]).write_text("1\n")  # e.g. Docker's
    assert not ensure_loaded(switches, ("false",))
    assert (switches / NAMES[0]).read_text() == "1\n"


def test_no_module_is_a_clear_error_and_writes_nothing(tmp_path):
    switches = tmp_path / "bridge"
    with pytest.raises(BridgeNetfilterError, match="modprobe br_netfilter"):
        ensure_loaded(switches, ("sh", "-c", "echo 'Module br_netfilter not found' >&2; exit 1"))
    assert not switches.exists()
