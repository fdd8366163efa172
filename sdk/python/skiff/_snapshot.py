"""Memory snapshots in the container (``enable_memory_snapshot=True``; the
server's half is src/server/snapshot.c, the protocol docs/protocol.md).

A template is a container whose init frame says ``"template": true``.  It
imports the function's module, makes a class pool's instance and runs its
``@enter(snap=True)`` hooks, says ``template_ready``, and then waits for
``fork`` frames.  For each it forks a child that becomes a container of its
own before it runs any of the user's code again:

  - new user (every id mapped to itself: the template writes the maps),
    mount, pid, IPC and UTS namespaces;
  - a root the server prepared (an overlay of the template's files over the
    image, visible here at ``/skiff/snap/roots/<id>``), into which the
    template's /proc, /sys, /dev, code folders, sockets and /etc files are
    bound, with a fresh /tmp, /dev/shm and /dev/mqueue; then pivot_root;
  - stdout and stderr: the FIFOs ``/skiff/snap/io/<id>.1`` and ``.2``;
  - pid 1 of a pid namespace of its own: the template, which made a user and
    pid namespace of its own at start (_own_namespaces), unshares a new pid
    namespace before each fork, so the child is born its pid 1; where the
    template could not make those, the child forks again (it exits; the
    template reaps it).

The child then connects to the worker socket with the container's id and
token like any container; the server moves it into its cgroup and sends the
init frame.  Everything mounted from the template is locked in the child's
mount namespace (it belongs to a less privileged user namespace), so it
cannot unmask the template's /proc.  Processes are not dumpable, and /proc
(hidepid=2) shows each only itself.

What a fork cannot inherit is reported when the template is ready: threads
(only the forking thread exists in a fork), open sockets (shared with every
fork), and an initialized GPU.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from time import monotonic, time as _wall
from typing import Any, Optional

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
MNT_DETACH = 2
SYS_PIVOT_ROOT = 155            # x86-64
PR_SET_DUMPABLE = 4

_libc: Any = None
_groups: Optional["list[int]"] = None   # the template's groups before it joined hidepid's
_own_pidns = -1     # the template's own pid namespace (an fd), when it made one (_own_namespaces)


def _lib() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def _mount(src: Optional[str], target: str, fstype: Optional[str], flags: int,
           data: Optional[str] = None) -> None:
    _check(_lib().mount(src.encode() if src else None, target.encode(),
                        fstype.encode() if fstype else None, flags,
                        data.encode() if data else None), f"mount {target}")


def unsafe_state(keep_fd: int) -> "list[str]":
    """What the template holds that its forks cannot have, in words."""
    out = []
    others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if others:
        out.append(f"{len(others)} thread(s) started while the snapshot was made "
                   f"({', '.join(others[:5])}) do not exist in the containers started from "
                   f"it; start them in a snap=False @enter hook")
    sockets = 0
    gpus = 0
    try:
        for fd in os.listdir("/proc/self/fd"):
            if int(fd) == keep_fd:
                continue
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            sockets += target.startswith("socket:")
            gpus += target.startswith("/dev/nvidia")
    except OSError:
        pass
    if sockets:
        out.append(f"{sockets} open socket(s) (a client or a connection made while the "
                   f"snapshot was made) would be shared by every container started from it; "
                   f"open them in a snap=False @enter hook")
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None) if torch is not None else None
    try:
        cuda_on = bool(cuda is not None and cuda.is_initialized())
    except Exception:
        cuda_on = False
    if gpus or cuda_on:
        out.append("a GPU was initialized while the snapshot was made; GPU state cannot be "
                   "snapshotted: move it to a snap=False @enter hook")
    return out


def _hidepid_gid() -> Optional[int]:
    """The gid= of /proc's hidepid (its members see every process), or None."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and fields[4] == "/proc":
                    for opt in line.split(" - ", 1)[-1].split()[-1].split(","):
                        if opt.startswith("gid="):
                            return int(opt[4:])
    except (OSError, ValueError):
        pass
    return None


def _proc_pid(pid: int) -> int:
    """pid (as this process's pid namespace numbers it) as /proc numbers it:
    the container's /proc is not the template's own pid namespace's when the
    template made one (_own_namespaces).  A pidfd's fdinfo says."""
    if _own_pidns < 0:
        return pid
    fd = os.pidfd_open(pid)
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("Pid:"):
                    return int(line.split()[1])
    finally:
        os.close(fd)
    return pid


def _map_ids(pid: int) -> bool:
    """In the template: maps every user and group id to itself in the user
    namespace the first child pid has just made (the template may: it has
    CAP_SETUID and CAP_SETGID where that namespace's parent is).  False when
    it cannot (the child then maps only its own ids)."""
    try:
        pid = _proc_pid(pid)
        for kind in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{kind}", "w") as f:
                f.write("0 0 4294967295")
        return True
    except OSError:
        return False


def _map_own_ids(uid: int, gid: int) -> None:
    """Inside a user namespace just made, when no one outside maps its ids:
    only the process's own user and group (what an unprivileged process may)."""
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{gid} {gid} 1")


def _setup(frame: "dict[str, Any]", uid: int, gid: int, told: int, mapped: int,
           new_pid: bool = True) -> float:
    """In the first child: namespaces, root, stdio.  Once its namespaces are
    made it says so on ``told`` and waits on ``mapped`` for the template to map
    its ids ("m"; anything else: it maps only its own).  Returns the time it
    took (ms)."""
    t = monotonic()
    cid = str(frame["id"])
    root = str(frame["root"])
    io = str(frame["io"])
    out_fd = os.open(io + ".1", os.O_WRONLY)
    err_fd = os.open(io + ".2", os.O_WRONLY)
    with open("/etc/hosts") as f:
        hosts = f.read()
    with open("/etc/resolv.conf") as f:
        resolv = f.read()
    old_name = os.uname().nodename
    lib = _lib()
    _check(lib.unshare(CLONE_NEWUSER | CLONE_NEWNS | (CLONE_NEWPID if new_pid else 0) |
                       CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    os.write(told, b"unshared\n")
    if os.read(mapped, 1) != b"m":
        _map_own_ids(uid, gid)
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount(root, root, None, MS_BIND | MS_REC)
    for d in ("proc", "sys", "dev"):
        os.makedirs(f"{root}/{d}", exist_ok=True)
        _mount(f"/{d}", f"{root}/{d}", None, MS_BIND | MS_REC)
    _mount("shm", f"{root}/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
           "mode=1777,size=65536k")
    _mount("mqueue", f"{root}/dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.makedirs(f"{root}/tmp", exist_ok=True)
    _mount("tmpfs", f"{root}/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for d in ("/skiff/sdk", "/skiff/app", "/skiff/extra", "/skiff/run"):
        if os.path.isdir(d):
            os.makedirs(root + d, exist_ok=True)
            _mount(d, root + d, None, MS_BIND | MS_REC)
    # Its own name: in its UTS namespace and its /etc (its overlay's copy).
    _check(lib.sethostname(cid.encode(), len(cid)), "sethostname")
    for name, text in (("hostname", cid + "\n"), ("hosts", hosts.replace(old_name, cid)),
                       ("resolv.conf", resolv)):
        path = f"{root}/etc/{name}"
        try:
            os.unlink(path)
        except OSError:
            pass
        with open(path, "w") as f:
            f.write(text)
    os.chdir(root)
    _check(lib.syscall(SYS_PIVOT_ROOT, b".", b"."), "pivot_root")
    _check(lib.umount2(b".", MNT_DETACH), "detaching the template's root")
    os.chdir("/")
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    for fd in (null, out_fd, err_fd):
        os.close(fd)
    return (monotonic() - t) * 1000


def _fork(conn: Any, frame: "dict[str, Any]") -> Optional["tuple[float, float]"]:
    """Forks a container off the template.  In the template: None once the
    first child has reported (a failure is sent as ``fork_failed``).  In the
    container: (its start time, its setup's ms)."""
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()            # first child -> template: "unshared", then "ok" or why not
    r2, w2 = os.pipe()          # template -> first child: ids mapped ("m") or not ("x")
    once = _own_pidns >= 0
    if once:
        # The child is born pid 1 of a new pid namespace; then this one's
        # children go back to the template's own (see _own_namespaces).
        _check(_lib().unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")
    pid = os.fork()
    if pid and once and _lib().setns(_own_pidns, CLONE_NEWPID) != 0:
        os.kill(pid, signal.SIGKILL)
        raise OSError(ctypes.get_errno(), "setns back into the template's pid namespace")
    if pid:
        os.close(w)
        os.close(r2)
        with os.fdopen(r, "rb") as f:
            status = f.readline().decode(errors="replace").strip()
            if status == "unshared":
                os.write(w2, b"m" if _map_ids(pid) else b"x")
                status = f.readline().decode(errors="replace").strip()
        os.close(w2)
        if status != "ok":
            from skiff._container import _json_frame
            conn.send(_json_frame({"t": "fork_failed", "id": frame.get("id"),
                                   "message": status or "the child died before it said why"}))
        return None
    # The first child: not the template any more.
    t0 = _wall()
    os.close(r)
    os.close(w2)
    try:
        if _groups is not None:
            os.setgroups(_groups)   # not the group that sees every process
        conn.sock.close()
        setup_ms = _setup(frame, os.getuid(), os.getgid(), w, r2, new_pid=not once)
        if once:
            os.write(w, b"ok\n")     # already pid 1 of its pid namespace
        else:
            pid2 = os.fork()
            if pid2:
                os.write(w, b"ok\n")
                os._exit(0)
    except BaseException as e:
        try:
            os.write(w, f"{type(e).__name__}: {e}\n".encode(errors="replace"))
        finally:
            os._exit(1)
    # The container's process: pid 1 of its pid namespace.
    os.close(w)
    os.close(r2)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.environ["SKIFF_CONTAINER_ID"] = str(frame["id"])
    os.environ["SKIFF_CONTAINER_TOKEN"] = str(frame["token"])
    os.environ["HOSTNAME"] = str(frame["id"])
    return t0, setup_ms


def _own_namespaces(conn: Any) -> None:
    """At the template's start, before any of the user's code (single-threaded):
    moves it into a user namespace of its own (every id mapped, by a helper
    left outside) and makes it pid 1 of a pid namespace of its own, owned by
    that user namespace.  There it may give each fork a new pid namespace
    with one fork (unshare(CLONE_NEWPID), fork, setns back), where otherwise a
    fork forks again to be pid 1 -- twice the page tables of a big process.
    The process that was pid 1 of the container stays as the template's
    waiter and never returns from here.  Best effort: on any failure before
    the namespaces are made, forks take the two-fork way."""
    global _own_pidns
    lib = _lib()
    r, w = os.pipe()
    helper = os.fork()
    if helper == 0:             # in the parent user namespace: writes the maps
        os.close(w)
        gid = _hidepid_gid()    # to see the template in /proc once it is not dumpable
        try:
            if gid is not None:
                os.setgroups(os.getgroups() + [gid])
            ok = os.read(r, 1) == b"u" and _map_ids(os.getppid())
        except OSError:
            ok = False
        os._exit(0 if ok else 1)
    os.close(r)
    if lib.unshare(CLONE_NEWUSER | CLONE_NEWPID) != 0:
        os.close(w)
        os.waitpid(helper, 0)
        return
    os.write(w, b"u")
    os.close(w)
    _, status = os.waitpid(helper, 0)
    if status != 0:            # own ids only: the forks will map only root
        _map_own_ids(os.getuid(), os.getgid())
    pid = os.fork()
    if pid:
        # The waiter: the template's exit is the container's.
        conn.sock.close()
        signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGTERM))
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
            except ChildProcessError:
                status = 0
                break
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF if status else 0)
    _own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)


def template(conn: Any, init: "dict[str, Any]", body: bytes) -> Optional["tuple[Any, ...]"]:
    """Runs a template: the import and the snap hooks, then forks on demand.
    Returns None when the template is told to go; in a fork, what the
    container goes on with: (target, instance or None, t0, setup_ms)."""
    from skiff import _container as C

    try:
        _own_namespaces(conn)
    except OSError as e:
        sys.stderr.write(f"skiff: memory snapshot: one fork per container is not possible "
                         f"here ({e}); forking twice\n")
    try:
        t1 = monotonic()
        target = C._load_function(init, body)
        t2 = monotonic()
        obj = None
        if init.get("cls"):
            from skiff import _container_cls
            obj = _container_cls.instance(target, init)
            _container_cls.snap_enter(obj, init)
        t3 = monotonic()
    except C._Terminate:
        raise
    except BaseException as e:
        C._import_failed(conn, e)
        return None
    warnings = unsafe_state(conn.sock.fileno())
    for text in warnings:
        sys.stderr.write(f"skiff: memory snapshot: {text}\n")
    sys.stderr.flush()
    _lib()                                     # loaded once, here, not in each fork
    # To map its forks' ids the template must see them in /proc, where
    # hidepid shows each process only itself, but everything to its gid=
    # group: the template joins it (each fork leaves it first thing).
    global _groups
    gid = _hidepid_gid()
    if gid is not None:
        try:
            groups = os.getgroups()
            os.setgroups(groups + [gid])
            _groups = groups
        except OSError:
            pass
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    # Forks are reaped by the kernel (the first child exits at once; the
    # containers' processes are adopted by this pid 1 when it does).
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    conn.send(C._json_frame({"t": "template_ready", "import_ms": round((t2 - t1) * 1000, 3),
                             "enter_ms": round((t3 - t2) * 1000, 3), "warnings": warnings}))
    while True:
        frame, _ = conn.recv()
        kind = frame.get("t")
        if kind == "fork":
            child = _fork(conn, frame)
            if child is not None:
                return (target, obj) + child
        elif kind == "stop":
            return None
