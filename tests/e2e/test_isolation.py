"""What the container guarantees: its own PID space, hostname, filesystem and
network; enforced memory, CPU and time limits; nothing left behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from typing import Any, Iterator

import pytest

import skiff
from conftest import cgroups_named, mounts_naming
from skiff.exception import OutOfMemoryError, ResourceExhaustedError, SandboxTimeoutError

# Top-level directories of a Debian root filesystem; anything else on the
# host's / is host-specific and must not show up in a container.
STANDARD_ROOT = {
    "bin", "boot", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "media", "mnt",
    "opt", "proc", "root", "run", "sbin", "srv", "sys", "tmp", "usr", "var",
}

PROBE = r"""
import json, os, socket
paths = json.loads(os.environ["PROBE_PATHS"])
print(json.dumps({
    "pid": os.getpid(),
    "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "pid1": open("/proc/1/cmdline", "rb").read().decode(errors="replace"),
    "hostname": socket.gethostname(),
    "os_release": open("/etc/os-release").read(),
    "root": sorted(os.listdir("/")),
    "exists": {p: os.path.exists(p) for p in paths},
}))
"""


def test_container_is_isolated_from_the_host(image: Any) -> None:
    here = os.path.abspath(__file__)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(here)))
    paths = [here, os.path.dirname(here), repo, os.environ["SKIFF_HOME"]]
    sb = skiff.Sandbox.create("python3", "-c", PROBE, env={"PROBE_PATHS": json.dumps(paths)})
    sb.wait()
    out, err = sb.stdout.read(), sb.stderr.read()
    assert sb.returncode == 0, err
    info = json.loads(out)

    # Its own PID namespace: the command is PID 1 and sees only itself.
    assert info["pid"] == 1, f"the command is pid {info['pid']}, pid 1 is {info['pid1']!r}"
    assert info["pid1"].split("\0")[0] == "python3"
    assert info["pids"] == [1]
    # Its own hostname.
    assert info["hostname"] and info["hostname"] != socket.gethostname()
    # A Debian bookworm root, not the host's.
    assert "VERSION_CODENAME=bookworm" in info["os_release"]
    assert not any(info["exists"].values()), f"host paths visible: {info['exists']}"
    host_specific = set(os.listdir("/")) - STANDARD_ROOT
    assert not set(info["root"]) & host_specific, (
        f"host-specific dirs in the container's /: {set(info['root']) & host_specific}")


def test_memory_limit_kills_with_out_of_memory(image: Any) -> None:
    sb = skiff.Sandbox.create(
        "python3", "-c", "x = b'\\x01' * (512 * 1024 * 1024); print('survived', len(x))",
        memory=64)
    with pytest.raises(OutOfMemoryError, match="64 MiB") as exc:
        sb.wait()
    assert isinstance(exc.value, ResourceExhaustedError)
    assert "memory" in str(exc.value)
    assert sb.returncode == 137
    assert "survived" not in sb.stdout.read()
    assert sb.info()["oom"] is True


def test_within_memory_limit_runs(image: Any) -> None:
    sb = skiff.Sandbox.create(
        "python3", "-c", "x = b'\\x01' * (32 * 1024 * 1024); print('ok', len(x))", memory=256)
    sb.wait()
    assert sb.returncode == 0
    assert sb.stdout.read() == f"ok {32 * 1024 * 1024}\n"


def test_timeout_kills(image: Any) -> None:
    t0 = time.monotonic()
    sb = skiff.Sandbox.create("sleep", "30", timeout=2)
    with pytest.raises(SandboxTimeoutError, match="timeout"):
        sb.wait()
    elapsed = time.monotonic() - t0
    assert 1.5 < elapsed < 8, f"timeout=2 took {elapsed:.1f} s"
    assert sb.returncode == 137
    assert sb.info()["timed_out"] is True


BUSY = """
import os, time
t = time.monotonic()
while time.monotonic() - t < 2.0:
    pass
c = os.times()
print(c.user + c.system)
"""


def _cpu_seconds_of_busy_loop(**kw: Any) -> float:
    sb = skiff.Sandbox.create("python3", "-c", BUSY, **kw)
    sb.wait()
    assert sb.returncode == 0, sb.stderr.read()
    return float(sb.stdout.read())


def test_cpu_limit_is_enforced(image: Any) -> None:
    limited = _cpu_seconds_of_busy_loop(cpu=0.5)
    # 2 s of wall time at half a core is 1 s of CPU time, plus one period of slack.
    assert limited <= 1.25, f"cpu=0.5 got {limited:.2f} s of CPU in 2 s"
    unlimited = _cpu_seconds_of_busy_loop()
    assert unlimited >= 1.5, f"without cpu= a busy loop got only {unlimited:.2f} s in 2 s"


def _host_ipv4s() -> list[str]:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True)
    addrs = ["127.0.0.1"]
    for line in out.stdout.splitlines():
        parts = line.split()
        if "inet" in parts:
            addr = parts[parts.index("inet") + 1].split("/")[0]
            if addr not in addrs:
                addrs.append(addr)
    return addrs


@pytest.fixture
def tcp_listener() -> Iterator[int]:
    """A TCP server on all of the host's addresses; yields its port."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                conn.close()
            except OSError:
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    srv.close()


NET_PROBE = """
import json, socket, sys
port = int(sys.argv[1])
reached = []
for host in sys.argv[2:]:
    try:
        socket.create_connection((host, port), timeout=2).close()
        reached.append(host)
    except OSError:
        pass
ifaces = [l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]]
print(json.dumps({"reached": reached, "ifaces": ifaces}))
"""


def _net_probe(port: int, block: bool) -> dict[str, Any]:
    sb = skiff.Sandbox.create("python3", "-c", NET_PROBE, str(port), *_host_ipv4s(),
                              block_network=block)
    sb.wait()
    assert sb.returncode == 0, sb.stderr.read()
    result: dict[str, Any] = json.loads(sb.stdout.read())
    return result


def test_block_network(image: Any, tcp_listener: int) -> None:
    blocked = _net_probe(tcp_listener, block=True)
    assert blocked["ifaces"] == ["lo"]
    assert blocked["reached"] == []
    open_ = _net_probe(tcp_listener, block=False)
    assert open_["reached"], f"without block_network nothing on the host was reachable: {open_}"


@pytest.mark.parametrize("how", ["exit", "terminate", "oom"])
def test_nothing_left_behind_when_a_sandbox_ends(image: Any, how: str) -> None:
    if how == "exit":
        sb = skiff.Sandbox.create("true")
    elif how == "terminate":
        sb = skiff.Sandbox.create("sleep", "100")
        sb.terminate()
    else:
        sb = skiff.Sandbox.create("python3", "-c", "b'1' * (256 << 20)", memory=32)
    sb.wait(raise_on_termination=False)
    sid = sb.object_id
    deadline = time.monotonic() + 3
    while True:
        mounts, cgroups = mounts_naming(sid), cgroups_named({sid})
        if not mounts and not cgroups:
            break
        assert time.monotonic() < deadline, (
            f"{sid} ended but left mounts {mounts} and cgroups {cgroups}")
        time.sleep(0.1)
