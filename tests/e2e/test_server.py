"""The server's own life: one server per home, an owner-only socket, a clean
stop on SIGTERM, recovery after a crash, and what /v1/health says about the host.

Every test here starts extra `skiff server` processes of its own, each with a
fresh SKIFF_HOME under /tmp (never the session server's).  Tests that need a
container give their server a stand-in for debootstrap (SKIFF_DEBOOTSTRAP) that
copies the session's already built root file system, so no image is built
from the network here.
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from typing import Any, Callable, Iterator, Optional

import pytest

from conftest import SKIFF_BIN, _health, cgroups_named, mounts_under
from extra_server import ExtraServer, http_json, processes_with_cmdline, scrub_home

StartFn = Callable[..., ExtraServer]


@pytest.fixture(scope="module")
def session_rootfs(server: Any, image: Any) -> str:
    """The root file system of the session's debian_slim image."""
    status, j = http_json(server.sock, "GET", "/v1/images")
    assert status == 200, j
    rows = [i for i in j["images"] if i["image_id"] == image.object_id]
    assert rows and rows[0].get("rootfs"), f"GET /v1/images has no rootfs for {image}: {j}"
    root = str(rows[0]["rootfs"])
    assert os.path.isfile(os.path.join(root, "usr/bin/python3")), root
    return root


@pytest.fixture(scope="module")
def copy_debootstrap(session_rootfs: str) -> Iterator[str]:
    """A SKIFF_DEBOOTSTRAP program that copies session_rootfs into its target."""
    d = tempfile.mkdtemp(prefix="skiff-fake-debootstrap-", dir="/tmp")
    path = os.path.join(d, "debootstrap")
    with open(path, "w") as f:
        f.write(f"""#!/bin/sh
# Test stand-in for: debootstrap --variant=minbase --include=python3 SUITE TARGET MIRROR
set -e
[ "$#" -eq 5 ] || {{ echo "fake debootstrap: want 5 arguments, got $#: $*"; exit 2; }}
mkdir -p "$4"
echo "I: copying a prebuilt root file system into $4"
cp -a {shlex.quote(session_rootfs)}/. "$4"/
echo "I: Base system installed successfully."
""")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def start_server() -> Iterator[StartFn]:
    """start_server(home=None, env=None, wait=True, umask=None) starts an extra
    server (in a fresh home unless one is given).  Afterwards, whatever the test
    did, every such server is stopped and its home scrubbed and removed."""
    started: list[ExtraServer] = []
    homes: list[str] = []

    def start(home: Optional[str] = None, env: Optional[dict[str, str]] = None,
              wait: bool = True, umask: Optional[int] = None,
              args: tuple[str, ...] = ()) -> ExtraServer:
        if home is None:
            home = tempfile.mkdtemp(prefix="skiff-srv-", dir="/tmp")
            homes.append(home)
        srv = ExtraServer(home, env, args)
        started.append(srv)
        return srv.start(wait=wait, umask=umask)

    yield start
    for srv in started:
        srv.stop()
    for home in homes:
        scrub_home(home)
    for srv in started:
        srv.close_log()


def _ready(start_server: StartFn, copy_debootstrap: str) -> tuple[ExtraServer, str]:
    """An extra server in a fresh home with the debian_slim image in place."""
    srv = start_server(env={"SKIFF_DEBOOTSTRAP": copy_debootstrap})
    lines = srv.build_image()
    assert "image_id" in lines[-1], f"build failed: {lines[-1]}\n{srv.log()}"
    return srv, str(lines[-1]["image_id"])


def _sleep_argv() -> list[str]:
    """`sleep 1000.NNNNNN`: a command line no other process on the host has."""
    return ["sleep", f"1000.{random.randrange(10**6):06d}"]


def _wait_for(cond: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def _start_sleepers(srv: ExtraServer, image_id: str, n: int) -> dict[str, tuple[list[str], list[int]]]:
    """n sandboxes running unique sleeps: {sandbox_id: (argv, host pids)}."""
    out = {}
    for _ in range(n):
        argv = _sleep_argv()
        sid = srv.sandbox(image_id, argv)
        pids = _wait_for(lambda: processes_with_cmdline(argv), f"{argv} to run in {sid}")
        out[sid] = (argv, pids)
    for sid in out:
        status, j = srv.json("GET", f"/v1/sandboxes/{sid}")
        assert status == 200 and j["state"] == "running", j
    return out


def _alive(pid: int) -> bool:
    """True for a live process (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_second_server_on_the_same_home_is_refused(start_server: StartFn) -> None:
    first = start_server()
    link = first.home + ".link"
    os.symlink(first.home, link)
    try:
        # The same home by its own name, and by another name for the same folder.
        for home_arg in (first.home, link):
            t0 = time.monotonic()
            r = subprocess.run([SKIFF_BIN, "server", "--home", home_arg], capture_output=True,
                               text=True, timeout=20, stdin=subprocess.DEVNULL,
                               env=first.env)
            took = time.monotonic() - t0
            assert r.returncode != 0, f"second server on {home_arg} exited 0:\n{r.stderr}"
            assert took < 5, f"the refusal took {took:.1f} s"
            msg = r.stdout + r.stderr
            assert "already running" in msg, msg
            assert first.home in msg, f"the message does not name the home {first.home}: {msg}"
            assert str(first.proc.pid) in msg, f"the message does not name pid {first.proc.pid}: {msg}"
    finally:
        os.unlink(link)

    # The first keeps serving, on its socket (which the refused one left alone).
    assert first.running(), first.log()
    h = _health(first.sock)
    assert h is not None and h["pid"] == first.proc.pid, h
    status, j = first.json("GET", "/v1/sandboxes?all=1")
    assert status == 200 and j == {"sandboxes": []}, j
    assert first.stop() == 0, first.log()


def test_socket_is_owner_only(start_server: StartFn) -> None:
    # Even when started with a umask that would leave it open to all.
    srv = start_server(umask=0)
    st = os.stat(srv.sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600, f"socket mode is {stat.S_IMODE(st.st_mode):o}"
    assert st.st_uid == os.geteuid()


def test_sigterm_stops_every_sandbox_and_leaves_nothing(start_server: StartFn,
                                                        copy_debootstrap: str) -> None:
    srv, image_id = _ready(start_server, copy_debootstrap)
    sleepers = _start_sleepers(srv, image_id, 2)
    ids = set(sleepers)
    # Sanity: the containers hold what the stop must release.
    assert mounts_under(srv.home), "no mounts under the home while containers run"
    assert cgroups_named(ids), f"no cgroups named {ids} while they run"

    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    try:
        rc = srv.proc.wait(15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"server still running 15 s after SIGTERM:\n{srv.log()}")
    took = time.monotonic() - t0
    assert rc == 0, f"exit status {rc} after SIGTERM:\n{srv.log()}"
    assert took < 10, f"stopping took {took:.1f} s"

    assert mounts_under(srv.home) == []
    assert cgroups_named(ids) == []
    for sid, (argv, pids) in sleepers.items():
        assert processes_with_cmdline(argv) == [], f"{sid}'s {argv} still runs"
        assert not any(_alive(p) for p in pids), f"{sid}'s pids {pids} still alive"
    assert not os.path.exists(srv.sock), "the socket is left behind"

    # The next server finds them recorded as ended.
    again = start_server(home=srv.home, env={"SKIFF_DEBOOTSTRAP": copy_debootstrap})
    for sid in ids:
        status, j = again.json("GET", f"/v1/sandboxes/{sid}")
        assert status == 200, j
        assert j["state"] == "exited", j
    status, j = again.json("GET", "/v1/sandboxes")
    assert status == 200 and not ids & {s["sandbox_id"] for s in j["sandboxes"]}, j
    assert again.stop() == 0, again.log()


def test_restart_after_a_crash_cleans_up(start_server: StartFn, copy_debootstrap: str) -> None:
    srv, image_id = _ready(start_server, copy_debootstrap)
    ((sid, (argv, pids)),) = _start_sleepers(srv, image_id, 1).items()

    srv.kill9()
    # Sanity: a crash leaves the container behind.
    assert mounts_under(srv.home), "no mounts left after kill -9 (nothing to recover?)"
    assert cgroups_named({sid}), f"no cgroup left for {sid} after kill -9"
    assert processes_with_cmdline(argv), f"{argv} did not outlive the server"

    again = start_server(home=srv.home, env={"SKIFF_DEBOOTSTRAP": copy_debootstrap})
    # By the time it answers, the leftovers are gone.
    assert mounts_under(again.home) == [], again.log()
    assert cgroups_named({sid}) == [], again.log()
    assert processes_with_cmdline(argv) == [], f"{argv} survived the recovery\n{again.log()}"
    assert not any(_alive(p) for p in pids)
    assert not os.path.exists(os.path.join(again.home, "containers", sid))

    status, j = again.json("GET", f"/v1/sandboxes/{sid}")
    assert status == 200, j
    assert j["state"] == "exited" and j["terminated"] is True, j
    status, j = again.json("GET", "/v1/sandboxes")
    assert status == 200 and sid not in {s["sandbox_id"] for s in j["sandboxes"]}, j

    # The recovered home serves new containers.
    new = again.sandbox(image_id, ["sh", "-c", "exit 3"])
    status, j = again.json("GET", f"/v1/processes/{new}/wait?timeout=30", timeout=40)
    assert status == 200 and j["done"] and j["returncode"] == 3, j
    assert again.stop() == 0, again.log()
    assert mounts_under(again.home) == []


def _expected_host() -> tuple[str, str]:
    """(cgroup mode, runtime) the server should report, read from our own mountinfo."""
    memory_v1 = unified = False
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            rest = fields[fields.index("-") + 1:]
            fstype, superopts = rest[0], rest[2] if len(rest) > 2 else ""
            if fstype == "cgroup2":
                unified = True
            elif fstype == "cgroup" and "memory" in superopts.split(","):
                memory_v1 = True
    if memory_v1:
        mode = "v1-hybrid" if unified else "v1"
    elif unified:
        mode = "v2"
    else:
        pytest.skip("no cgroup v1 memory hierarchy and no cgroup2 mount on this host")
    want, other = ("crun", "runc") if mode == "v2" else ("runc", "crun")
    path = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"
    if shutil.which(want, path=path) is None:
        if shutil.which(other, path=path) is None:
            pytest.skip("neither runc nor crun is installed")
        want = other
    return mode, want


def test_health_reports_host(start_server: StartFn) -> None:
    mode, runtime = _expected_host()
    srv = start_server()
    h = srv.health
    assert h is not None
    assert h["cgroup"] == mode, h
    assert h["runtime"] == runtime, h
    assert h["pid"] == srv.proc.pid
    assert h["skiff_home"] == srv.home
    assert h["cpus"] == os.cpu_count()
    with open("/proc/meminfo") as f:
        total_kib = int(f.readline().split()[1])
    assert abs(h["memory_mib"] - total_kib // 1024) <= 1, h


def test_restart_after_a_crash_during_a_build_stops_the_build(start_server: StartFn) -> None:
    d = tempfile.mkdtemp(prefix="skiff-fake-debootstrap-", dir="/tmp")
    sleep_argv = _sleep_argv()
    sleep_argv[1] = "3." + sleep_argv[1].split(".")[1]  # `sleep 3.NNNNNN`
    pidfile = os.path.join(d, "pid")
    script = os.path.join(d, "debootstrap")
    with open(script, "w") as f:
        f.write(f"""#!/bin/sh
echo $$ > {pidfile}
echo "I: fake build: slow"
{shlex.join(sleep_argv)}
mkdir -p "$4/usr/bin"
cp /bin/true "$4/usr/bin/python3"
""")
    os.chmod(script, 0o755)
    env = {"SKIFF_DEBOOTSTRAP": script}
    try:
        srv = start_server(env=env)

        def post() -> None:
            try:
                srv.build_image(timeout=30)
            except Exception:
                pass  # the server dies under it

        threading.Thread(target=post, daemon=True).start()
        _wait_for(lambda: processes_with_cmdline(sleep_argv), "the build to start")
        srv.kill9()

        again = start_server(home=srv.home, env=env)
        assert processes_with_cmdline(sleep_argv) == [], \
            f"the dead server's build still runs after the restart\n{again.log()}"
        time.sleep(3.5)  # when an orphaned build would have written its tree
        images = os.listdir(os.path.join(again.home, "images"))
        assert not [e for e in images if e.startswith(".tmp-")], images
        assert again.stop() == 0, again.log()
    finally:
        try:
            with open(pidfile) as f:
                os.killpg(int(f.read()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
        shutil.rmtree(d, ignore_errors=True)
