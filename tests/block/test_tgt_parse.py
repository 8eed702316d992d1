"""tgtadm's output and errors, without a daemon: the parser and the typed errors."""

from __future__ import annotations

import pytest

from soko.block.targets.tgt import (
    NoSuchTarget,
    TargetExists,
    TgtadmError,
    TgtdNotRunning,
    classify,
    parse_show,
)

SHOW = """\
Target 1: iqn.2026-11.org.soko:volume-abc
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
    LUN information:
        LUN: 0
            Type: controller
            Backing store type: null
            Backing store path: None
        LUN: 1
            Type: disk
            Backing store type: rdwr
            Backing store path: /pool/volumes/volume-abc
            Backing store flags:
    Account information:
        soko12ab
    ACL information:
        iqn.2026-11.org.test:host1
Target 4: iqn.2026-11.test:boot
    System information:
        Driver: iscsi
    LUN information:
        LUN: 0
            Backing store path: None
    Account information:
    ACL information:
        ALL
"""


def test_parse_show():
    first, second = parse_show(SHOW)
    assert (first.tid, first.iqn) == (1, "iqn.2026-11.org.soko:volume-abc")
    assert first.luns == {1: "/pool/volumes/volume-abc"}
    assert first.accounts == ["soko12ab"] and first.acl == ["iqn.2026-11.org.test:host1"]
    assert (second.tid, second.luns, second.accounts, second.acl) == (4, {}, [], ["ALL"])


@pytest.mark.parametrize("code, stderr, error", [
    (22, "tgtadm: this target already exists\n", TargetExists),
    (22, "tgtadm: can't find the target\n", NoSuchTarget),
    (107, "tgtadm: failed to send request hdr to tgt daemon, Transport endpoint is not "
          "connected\n", TgtdNotRunning),
    (22, "tgtadm: invalid request\n", TgtadmError),
])
def test_errors_are_typed(code, stderr, error):
    exc = classify(["tgtadm", "--mode", "target"], code, stderr)
    assert type(exc) is error and exc.reason == stderr.strip().removeprefix("tgtadm: ")
