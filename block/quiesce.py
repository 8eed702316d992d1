"""Quiesce plans: freeze what writes to a volume, take the O(1) snapshot, always thaw.

A plan is NAMED in the operator's config (``[block] quiesce_plans``); the API only picks a
name, so no command string from a request is ever run (that would be remote code
execution as root). A plan is an ordered list of steps, each a TOML table with a ``kind``:

- ``exec``: ``pre`` and ``post`` argv lists, each run to completion (e.g. ``ssh host
  fsfreeze -f /mnt/data``). A ``pre`` that fails or times out may have half-done its work,
  so its ``post`` runs too.
- ``fsfreeze``: ``mountpoint`` (default: where the volume's local attachment is mounted on
  this host), frozen and thawed with the FIFREEZE/FITHAW ioctls (no process to start).
- ``hold``: ``argv`` started and kept running while frozen: ``input`` is written to its
  stdin, and the step is frozen once a stdout line equals ``ready``; thaw writes
  ``release`` and closes stdin. For locks that live as long as a session, such as MySQL's
  ``FLUSH TABLES WITH READ LOCK``.

Steps freeze in order and thaw in reverse; every step that froze is thawed on every path
(a later step failing, the snapshot failing or hanging). A watchdog thaws after
``max_freeze_seconds`` even if the snapshot step hangs. Before the first step runs, a
freeze record is written durably; ``recover`` (on service start and every reconcile)
thaws every step of a record whose process died or whose time ran out.

Other services add kinds through ``KINDS`` (name → class or ``"module:Class"``, imported on
first use). A kind is a class with:

- ``build(table, target) -> step`` (classmethod): checks the table (raising ``QuiesceError``
  with a message for the operator) and resolves it for ``target`` (a ``Target``; ``None``
  when rebuilding from a freeze record, so ``record()`` must hold everything resolved);
- ``step.freeze(timeout)``: freezes within ``timeout`` seconds or raises ``QuiesceError``,
  leaving nothing frozen;
- ``step.thaw(timeout)``: thaws; must succeed when nothing is frozen (recovery repeats it);
- ``step.record() -> dict``: JSON-serialisable, including ``kind``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import importlib
import json
import logging
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from soko.block.owner import current_owner, owner_alive
from soko.common.durable import atomic_write, makedirs_durable

log = logging.getLogger("soko.block.quiesce")

FIFREEZE = 0xC0045877  # _IOWR('X', 119, int) from linux/fs.h
FITHAW = 0xC0045878  # _IOWR('X', 120, int)
STEP_TIMEOUT = 5.0  # seconds a step may take unless its table says ``timeout``
TAIL = 400  # characters of a failing command's stderr kept in the error


class QuiesceError(RuntimeError):
    """A plan could not be used or a step failed; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Target:
    """What a plan quiesces: the volume, where it is attached on this host (if it is), the
    compute server it is attached to (if any), and the caller's token for steps that act
    as the caller (never written to a freeze record)."""

    volume_id: str
    local_device: str | None = None
    server_id: str | None = None
    token: str | None = dataclasses.field(default=None, repr=False)


def tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= TAIL else "..." + text[-TAIL:]


def check_argv(value, what: str) -> list[str]:
    if not (isinstance(value, list) and value and all(isinstance(a, str) for a in value)):
        raise QuiesceError(f"{what} must be a non-empty list of strings (an argv)")
    return value


def step_timeout(table: dict) -> float:
    value = table.get("timeout", STEP_TIMEOUT)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise QuiesceError(f"timeout must be a positive number of seconds, got {value!r}")
    return float(value)


def run_argv(argv: list[str], timeout: float, stdin: str | None = None) -> None:
    """Runs ``argv`` in its own session; on timeout its whole process group is killed (an
    ``ssh`` child must not keep the pipes open). Raises ``QuiesceError`` with stderr's tail."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    except OSError as exc:
        raise QuiesceError(f"{argv[0]}: {exc.strerror}") from None
    try:
        _, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        raise QuiesceError(f"{argv[0]} timed out after {timeout:.1f} s: {tail(err)}") from None
    if proc.returncode != 0:
        raise QuiesceError(f"{argv[0]} failed with status {proc.returncode}: {tail(err)}")


@dataclasses.dataclass
class ExecStep:
    pre: list[str]
    post: list[str]
    timeout: float = STEP_TIMEOUT

    @classmethod
    def build(cls, table: dict, target: Target | None) -> ExecStep:
        return cls(check_argv(table.get("pre"), "pre"), check_argv(table.get("post"), "post"),
                   step_timeout(table))

    def freeze(self, timeout: float) -> None:
        try:
            run_argv(self.pre, min(timeout, self.timeout))
        except QuiesceError:
            with contextlib.suppress(QuiesceError):  # it may have frozen before failing
                self.thaw(self.timeout)
            raise

    def thaw(self, timeout: float) -> None:
        run_argv(self.post, min(timeout, self.timeout))

    def record(self) -> dict:
        return {"kind": "exec", "pre": self.pre, "post": self.post, "timeout": self.timeout}


def mountpoint_of(device: str) -> str | None:
    """Where ``device`` is mounted (from /proc/self/mountinfo), or None."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-") + 2] == device:
                return fields[4].encode().decode("unicode_escape")  # \040 for spaces
    return None


@dataclasses.dataclass
class FsfreezeStep:
    mountpoint: str

    @classmethod
    def build(cls, table: dict, target: Target | None) -> FsfreezeStep:
        mountpoint = table.get("mountpoint")
        if mountpoint is None and target is not None:
            if target.local_device is None:
                raise QuiesceError(f"fsfreeze without a mountpoint freezes the volume's local "
                                   f"attachment, and volume {target.volume_id} has none "
                                   "(soko volume local-attach, then mount it)")
            mountpoint = mountpoint_of(target.local_device)
            if mountpoint is None:
                raise QuiesceError(f"volume {target.volume_id} is attached as "
                                   f"{target.local_device} but not mounted on this host")
        if not isinstance(mountpoint, str) or not mountpoint.startswith("/"):
            raise QuiesceError(f"fsfreeze needs an absolute mountpoint, got {mountpoint!r}")
        return cls(mountpoint)

    def _ioctl(self, request: int) -> None:
        fd = os.open(self.mountpoint, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.ioctl(fd, request, 0)
        finally:
            os.close(fd)

    def freeze(self, timeout: float) -> None:
        if not os.path.ismount(self.mountpoint):
            raise QuiesceError(f"{self.mountpoint} is not a mountpoint")
        try:
            self._ioctl(FIFREEZE)
        except OSError as exc:
            why = "it is already frozen" if exc.errno == errno.EBUSY else exc.strerror
            raise QuiesceError(f"cannot freeze {self.mountpoint}: {why}") from None

    def thaw(self, timeout: float) -> None:
        try:
            self._ioctl(FITHAW)
        except FileNotFoundError:
            return  # unmounted and gone: nothing left frozen
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: not frozen
                raise QuiesceError(f"cannot thaw {self.mountpoint}: {exc.strerror}") from None

    def record(self) -> dict:
        return {"kind": "fsfreeze", "mountpoint": self.mountpoint}


@dataclasses.dataclass
class HoldStep:
    argv: list[str]
    input: str = ""
    ready: str = "READY"
    release: str = ""
    timeout: float = STEP_TIMEOUT
    proc: subprocess.Popen | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def build(cls, table: dict, target: Target | None) -> HoldStep:
        texts = {k: table.get(k, d) for k, d in (("input", ""), ("ready", "READY"),
                                                 ("release", ""))}
        for key, value in texts.items():
            if not isinstance(value, str):
                raise QuiesceError(f"{key} must be a string")
        return cls(check_argv(table.get("argv"), "argv"), timeout=step_timeout(table), **texts)

    def freeze(self, timeout: float) -> None:
        """Starts the holder and waits for its ready line. Its stdin stays open: if soko
        dies, the pipe closes, the holder exits and its lock goes with it."""
        timeout = min(timeout, self.timeout)
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise QuiesceError(f"{self.argv[0]}: {exc.strerror}") from None
        deadline = time.monotonic() + timeout
        try:
            self.proc.stdin.write(self.input.encode())
            self.proc.stdin.flush()
            out = self.proc.stdout.fileno()
            seen = b""
            while self.ready.encode() not in seen.splitlines():
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([out], [], [], left)[0]:
                    raise QuiesceError(f"{self.argv[0]} did not print {self.ready!r} within "
                                       f"{timeout:.1f} s")
                chunk = os.read(out, 4096)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace")
                    raise QuiesceError(f"{self.argv[0]} exited with status {self.proc.wait()}: "
                                       f"{tail(err)}")
                seen = seen[-4096:] + chunk
        except (QuiesceError, OSError) as exc:
            self._stop()
            if isinstance(exc, QuiesceError):
                raise
            raise QuiesceError(f"{self.argv[0]}: {exc}") from None

    def thaw(self, timeout: float) -> None:
        if self.proc is None:
            return  # rebuilt from a record: the holder died with the process that ran it
        with contextlib.suppress(OSError):
            self.proc.stdin.write(self.release.encode())
            self.proc.stdin.close()
        try:
            self.proc.wait(min(timeout, self.timeout))
        except subprocess.TimeoutExpired:
            pass
        self._stop()

    def _stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                pipe.close()
        self.proc = None

    def record(self) -> dict:
        return {"kind": "hold", "argv": self.argv}


# Kinds by name: a class, or "module:Class" imported on first use (so block does not import
# compute). Compute registers its guest-agent freeze here.
KINDS: dict[str, type | str] = {"exec": ExecStep, "fsfreeze": FsfreezeStep, "hold": HoldStep,
                                "guest-agent": "soko.compute.quiesce_step:GuestAgentStep"}
# The plan a volume attached to a server gets by default (when compute is configured).
GUEST_AGENT_PLAN = "guest-agent"


def kind_class(name) -> type:
    entry = KINDS.get(name) if isinstance(name, str) else None
    if entry is None:
        raise QuiesceError(f"unknown step kind {name!r} (known: {', '.join(sorted(KINDS))})")
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = KINDS[name] = getattr(importlib.import_module(module), attr)
    return entry


def build_step(table, target: Target | None):
    if not isinstance(table, dict):
        raise QuiesceError(f"a step must be a table with a kind, got {table!r}")
    return kind_class(table.get("kind")).build(table, target)


def check_plans(plans: dict) -> None:
    """Config-time check of ``quiesce_plans``: each a non-empty list of step tables with a
    known kind (a kind's own checks may need the volume, so they run when a plan is used)."""
    for name, steps in plans.items():
        if not isinstance(steps, list) or not steps:
            raise QuiesceError(f"quiesce_plans.{name}: must be a non-empty list of steps")
        for table in steps:
            if not isinstance(table, dict):
                raise QuiesceError(f"quiesce_plans.{name}: a step must be a table, got {table!r}")
            try:
                kind_class(table.get("kind"))
            except QuiesceError as exc:
                raise QuiesceError(f"quiesce_plans.{name}: {exc}") from None


def describe(step) -> str:
    record = step.record()
    detail = record.get("mountpoint") or " ".join(record.get("pre") or record.get("argv") or [])
    return f"{record['kind']} {detail}".strip()


class Freeze:
    """One run of a plan: the steps frozen so far, thawed once, by whoever comes first
    (the caller when the snapshot is done, or the watchdog)."""

    def __init__(self, steps: list, deadline: float):
        self.steps = steps
        self.deadline = deadline
        self.frozen: list = []
        self.expired = False
        self.body_done = False  # the snapshot step ended while frozen: too late to expire
        self.thaw_errors: list[str] = []
        self.lock = threading.Lock()

    def run_pre(self) -> None:
        for number, step in enumerate(self.steps, 1):
            left = self.deadline - time.monotonic()
            if self.expired or left <= 0:
                raise QuiesceError("the freeze ran out of time before every step froze")
            try:
                step.freeze(left)
            except QuiesceError as exc:
                raise QuiesceError(f"step {number}/{len(self.steps)} ({describe(step)}) "
                                   f"failed: {exc}") from None
            with self.lock:
                self.frozen.append(step)
                late = self.expired
            if late:  # the watchdog thawed while this step froze: undo it too
                self.thaw_all()
                raise QuiesceError("the freeze ran out of time before every step froze")

    def thaw_all(self) -> None:
        with self.lock:
            while self.frozen:
                step = self.frozen.pop()
                try:
                    step.thaw(STEP_TIMEOUT)
                except QuiesceError as exc:
                    self.thaw_errors.append(f"{describe(step)}: {exc}")
                    log.error("thawing %s failed: %s", describe(step), exc)

    def expire(self) -> None:
        with self.lock:
            if self.body_done:
                return
            self.expired = True
        self.thaw_all()
        log.warning("a freeze hit its time limit; the watchdog thawed it")


@dataclasses.dataclass
class Outcome:
    """What a freeze did, for the snapshot's metadata and its status."""

    window_ms: float = 0.0
    expired: bool = False  # the watchdog thawed before the snapshot step ended
    thaw_errors: list[str] = dataclasses.field(default_factory=list)


class Quiescer:
    def __init__(self, state_dir: Path, plans: dict | None = None,
                 volume_plans: dict | None = None, max_freeze_seconds: float = 10.0):
        self.record_dir = state_dir / "frozen"
        self.plans = plans or {}
        self.volume_plans = volume_plans or {}  # volume id -> plan name (config wins)
        self.max_freeze_seconds = max_freeze_seconds
        check_plans(self.plans)

    def plan_name(self, choice, volume_id: str, metadata: dict,
                  server_id: str | None = None) -> str:
        """``True`` picks the volume's default: config's ``quiesce_volume_plans``, then the
        volume's ``quiesce_plan`` metadata item, then (attached to a server) its guest agent."""
        name = choice
        if choice is True:
            name = self.volume_plans.get(volume_id) or metadata.get("quiesce_plan")
            if name is None and server_id is not None and GUEST_AGENT_PLAN in self.plans:
                name = GUEST_AGENT_PLAN
            if name is None:
                raise QuiesceError(
                    f"volume {volume_id} has no default quiesce plan: set its metadata "
                    f"quiesce_plan=<plan> or name a plan ({self.known()})")
        if name not in self.plans:
            raise QuiesceError(f"no quiesce plan named {name!r} ({self.known()})")
        return name

    def known(self) -> str:
        return "known: " + ", ".join(sorted(self.plans)) if self.plans else \
            "none is configured: see [block] quiesce_plans"

    def steps(self, name: str, target: Target) -> list:
        try:
            return [build_step(table, target) for table in self.plans[name]]
        except QuiesceError as exc:
            raise QuiesceError(f"quiesce plan {name!r}: {exc}") from None

    @contextlib.contextmanager
    def exclusive(self, volume_id: str) -> Iterator[None]:
        """One freeze of a volume at a time on this host (across workers): a second plan
        would find the filesystem frozen, and its failing step's thaw would end the first
        plan's freeze early."""
        makedirs_durable(self.record_dir)
        with open(self.lock_path(volume_id), "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def lock_path(self, volume_id: str) -> Path:
        return self.record_dir / f"volume-{volume_id}.lock"

    def forget(self, volume_id: str) -> None:
        """Removes a deleted volume's lock file (no freeze can be running: a volume with
        snapshots, even one being taken, cannot be deleted)."""
        self.lock_path(volume_id).unlink(missing_ok=True)

    @contextlib.contextmanager
    def frozen(self, steps: list, key: str) -> Iterator[Outcome]:
        """Freezes ``steps`` around the body; the outcome is complete once the block ends.
        A failing step raises ``QuiesceError`` after every frozen step was thawed."""
        makedirs_durable(self.record_dir)
        record = self.record_dir / f"{key}.json"
        atomic_write(record, json.dumps({
            "owner": current_owner(), "until": time.time() + self.max_freeze_seconds,
            "steps": [step.record() for step in steps]}).encode())
        started = time.monotonic()
        freeze = Freeze(steps, started + self.max_freeze_seconds)
        watchdog = threading.Timer(self.max_freeze_seconds, freeze.expire)
        watchdog.daemon = True
        watchdog.start()
        outcome = Outcome()
        try:
            freeze.run_pre()
            yield outcome
            with freeze.lock:
                freeze.body_done = True
        finally:
            watchdog.cancel()
            freeze.thaw_all()
            outcome.window_ms = (time.monotonic() - started) * 1000
            outcome.expired = freeze.expired
            outcome.thaw_errors = freeze.thaw_errors
            if not freeze.thaw_errors:
                record.unlink(missing_ok=True)

    def recover(self) -> list[str]:
        """Thaws every step of each abandoned freeze record; returns the keys thawed."""
        if not self.record_dir.is_dir():
            return []
        thawed = []
        for path in sorted(self.record_dir.glob("*.json")):
            try:
                freeze = json.loads(path.read_bytes())
                if owner_alive(freeze["owner"]) and time.time() <= freeze["until"] + 1:
                    continue
                steps = [build_step(table, None) for table in freeze["steps"]]
            except FileNotFoundError:
                continue  # its freeze just ended
            except (ValueError, KeyError, TypeError, QuiesceError) as exc:
                log.error("unreadable freeze record %s (%s); moved aside", path, exc)
                path.rename(path.with_suffix(".bad"))
                continue
            errors = []
            for step in reversed(steps):
                try:
                    step.thaw(STEP_TIMEOUT)
                except QuiesceError as exc:
                    errors.append(str(exc))
            if errors:
                log.error("freeze %s is still not thawed: %s", path.stem, "; ".join(errors))
                continue
            log.warning("thawed freeze %s left by a process that died", path.stem)
            path.unlink(missing_ok=True)
            thawed.append(path.stem)
        return thawed
