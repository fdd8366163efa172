"""Sandboxes: containers that run a command, with Modal's Sandbox API.

    sb = skiff.Sandbox.create("python3", "-c", "print(1)", memory=256, timeout=60)
    sb.wait()
    print(sb.stdout.read(), sb.returncode)

A sandbox's main command is the process whose id is the sandbox id;
``sb.exec()`` starts more processes in the same container.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence
from ._quote import quote

from . import _client
from ._stream import StreamReader, StreamWriter, wait_process
from .app import App
from .exception import (
    InvalidError,
    OutOfMemoryError,
    SandboxTerminatedError,
    SandboxTimeoutError,
)
from .image import Image
from .secret import Secret, merge_env


def _check_cmd(what: str, cmd: Sequence[Any]) -> list[str]:
    for arg in cmd:
        if not isinstance(arg, str):
            raise InvalidError(
                f"{what}: every command argument must be a str, got {arg!r} "
                f"({type(arg).__name__})")
    return list(cmd)


def _check_workdir(workdir: Optional[str]) -> None:
    if workdir is not None and not isinstance(workdir, str):
        raise InvalidError(f"workdir must be a str path, got {type(workdir).__name__}")


class ContainerProcess:
    """A process started in a sandbox by ``Sandbox.exec``."""

    def __init__(self, client: _client.Client, process_id: str, text: bool = True) -> None:
        self._client = client
        self._process_id = process_id
        self._result: Optional[dict[str, Any]] = None
        self.stdout: StreamReader[Any] = StreamReader(client, process_id, "stdout", text)
        self.stderr: StreamReader[Any] = StreamReader(client, process_id, "stderr", text)
        self.stdin = StreamWriter(client, process_id)

    @property
    def object_id(self) -> str:
        return self._process_id

    @property
    def process_id(self) -> str:
        return self._process_id

    def __repr__(self) -> str:
        return f"<ContainerProcess {self._process_id}>"

    def wait(self) -> int:
        """Waits for the process to exit; returns its exit status (128+signal when killed)."""
        if self._result is None:
            self._result = wait_process(self._client, self._process_id)
        return int(self._result["returncode"])

    def poll(self) -> Optional[int]:
        """The exit status, or None while the process runs (does not block)."""
        if self._result is None:
            resp = wait_process(self._client, self._process_id, timeout=0)
            if resp.get("done"):
                self._result = resp
        return None if self._result is None else int(self._result["returncode"])

    @property
    def returncode(self) -> Optional[int]:
        """The exit status, or None while the process runs (asks the server)."""
        return self.poll()


class Sandbox:
    """A container running a command.  Make one with ``Sandbox.create``."""

    def __init__(self, client: _client.Client, sandbox_id: str,
                 info: Optional[Mapping[str, Any]] = None,
                 timeout: Optional[int] = None) -> None:
        # Users get sandboxes from Sandbox.create / from_id / list.
        self._client = client
        self._sandbox_id = sandbox_id
        self._info: dict[str, Any] = dict(info or {})
        self._timeout = timeout
        self._result: Optional[dict[str, Any]] = None
        self.stdout: StreamReader[str] = StreamReader(client, sandbox_id, "stdout")
        self.stderr: StreamReader[str] = StreamReader(client, sandbox_id, "stderr")
        self.stdin = StreamWriter(client, sandbox_id)

    # -- making sandboxes ----------------------------------------------------

    @classmethod
    def create(
        cls,
        *args: str,
        app: Optional[App] = None,
        image: Optional[Image] = None,
        secrets: Optional[Iterable[Secret]] = None,
        timeout: int = 300,
        workdir: Optional[str] = None,
        cpu: Optional[float] = None,
        memory: Optional[int] = None,
        env: Optional[Mapping[str, Optional[str]]] = None,
        block_network: bool = False,
        client: Optional[_client.Client] = None,
    ) -> "Sandbox":
        """Starts a container running ``args`` (``sleep infinity`` when empty).

        ``cpu`` is cores (may be fractional), ``memory`` MiB, ``timeout``
        seconds until the sandbox is killed; ``env`` and ``secrets`` become its
        environment; ``block_network`` leaves it only a loopback interface.
        Types are checked here; the server checks ranges (and raises
        InvalidError, NotFoundError or ResourceExhaustedError).
        """
        cmd = _check_cmd("Sandbox.create", args)
        if app is not None and not isinstance(app, App):
            raise InvalidError(f"app must be a skiff.App, got {type(app).__name__}")
        if image is None:
            image = Image.debian_slim()
        elif not isinstance(image, Image):
            raise InvalidError(f"image must be a skiff.Image, got {type(image).__name__}")
        if cpu is not None:
            if isinstance(cpu, tuple):
                raise InvalidError("cpu=(request, limit) is not supported yet; pass one number")
            if isinstance(cpu, bool) or not isinstance(cpu, (int, float)):
                raise InvalidError(f"cpu must be a number of cores, got {cpu!r}")
        if memory is not None:
            if isinstance(memory, tuple):
                raise InvalidError(
                    "memory=(request, limit) is not supported yet; pass one number of MiB")
            if isinstance(memory, bool) or not isinstance(memory, int):
                raise InvalidError(f"memory must be an int number of MiB, got {memory!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int):
            raise InvalidError(f"timeout must be an int number of seconds, got {timeout!r}")
        _check_workdir(workdir)
        full_env = merge_env(secrets, env)

        client = client or _client.get_client()
        app_id: Optional[str] = None
        if app is not None:
            app_id = app.app_id
            if app_id is None:
                raise InvalidError(
                    f"{app!r} is not on the server yet: use "
                    f"skiff.App.lookup({app.name or 'NAME'!r}, create_if_missing=True) "
                    "to get an app for sandboxes")
        image_id = image._build(client)
        body: dict[str, Any] = {
            "image_id": image_id,
            "cmd": cmd,
            "cpu": float(cpu) if cpu is not None else None,
            "memory": memory,
            "timeout": timeout,
            "workdir": workdir,
            "env": image._sandbox_env(full_env),
            "block_network": bool(block_network),
            "tty": False,
        }
        mounts = image._container_mounts()
        if mounts:
            body["mounts"] = mounts
        if app_id is not None:
            body["app_id"] = app_id
        resp = client.request("POST", "/v1/sandboxes", body)
        info = {"image_id": image_id, "app_id": app_id, "cmd": cmd,
                "cpu": body["cpu"], "memory": memory, "state": "running"}
        return cls(client, str(resp["sandbox_id"]), info, timeout=timeout)

    @classmethod
    def from_id(cls, sandbox_id: str, client: Optional[_client.Client] = None) -> "Sandbox":
        """The sandbox with this id (running or not); NotFoundError if unknown."""
        if not isinstance(sandbox_id, str) or not sandbox_id:
            raise InvalidError(f"sandbox_id must be a non-empty str, got {sandbox_id!r}")
        client = client or _client.get_client()
        info = client.request("GET", f"/v1/sandboxes/{quote(sandbox_id, safe='')}")
        return cls(client, str(info["sandbox_id"]), info)

    @classmethod
    def list(cls, *, app_id: Optional[str] = None,
             client: Optional[_client.Client] = None) -> Iterator["Sandbox"]:
        """The running sandboxes, newest first (only app ``app_id``'s when given)."""
        client = client or _client.get_client()
        path = "/v1/sandboxes"
        if app_id is not None:
            path += f"?app_id={quote(app_id, safe='')}"
        resp = client.request("GET", path)
        for info in resp.get("sandboxes", []):
            yield cls(client, str(info["sandbox_id"]), info)

    # -- the running sandbox -------------------------------------------------

    @property
    def object_id(self) -> str:
        """The sandbox id (``sb-...``)."""
        return self._sandbox_id

    def __repr__(self) -> str:
        return f"<Sandbox {self._sandbox_id}>"

    def info(self) -> dict[str, Any]:
        """The server's current record of the sandbox (docs/api.md SANDBOX)."""
        self._info = self._client.request(
            "GET", f"/v1/sandboxes/{quote(self._sandbox_id, safe='')}")
        return dict(self._info)

    def wait(self, raise_on_termination: bool = True) -> None:
        """Waits for the sandbox's command to exit.

        With ``raise_on_termination`` (the default), a sandbox that did not
        end by itself raises: SandboxTimeoutError (ran past ``timeout``),
        OutOfMemoryError (used more than ``memory``), SandboxTerminatedError
        (terminated).  ``returncode`` is set either way.
        """
        if self._result is None:
            self._result = wait_process(self._client, self._sandbox_id)
        if raise_on_termination:
            self._raise_for_result(self._result)

    def poll(self) -> Optional[int]:
        """The exit status, or None while the sandbox runs (does not block)."""
        if self._result is None:
            resp = wait_process(self._client, self._sandbox_id, timeout=0)
            if resp.get("done"):
                self._result = resp
        return self._returncode()

    @property
    def returncode(self) -> Optional[int]:
        """The exit status (128+signal when killed), or None while running."""
        return self.poll()

    def _returncode(self) -> Optional[int]:
        if self._result is None or self._result.get("returncode") is None:
            return None
        return int(self._result["returncode"])

    def _raise_for_result(self, r: Mapping[str, Any]) -> None:
        sid = self._sandbox_id
        rc = r.get("returncode")
        if r.get("oom"):
            memory = self._info.get("memory")
            if memory is None:
                try:
                    memory = self.info().get("memory")
                except Exception:  # the message is all that is at stake
                    memory = None
            limit = f"memory= limit of {memory} MiB" if memory else "memory limit"
            raise OutOfMemoryError(
                f"Sandbox {sid} ran out of memory: it exceeded its {limit} and was killed "
                f"(exit status {rc}); ask for more memory= or use less")
        if r.get("timed_out"):
            limit = f"timeout={self._timeout} s" if self._timeout else "timeout"
            raise SandboxTimeoutError(
                f"Sandbox {sid} ran past its {limit} and was killed (exit status {rc})")
        if r.get("terminated"):
            raise SandboxTerminatedError(f"Sandbox {sid} was terminated (exit status {rc})")

    def terminate(self) -> None:
        """Kills the sandbox's container (nothing happens if it has exited)."""
        self._client.request("POST", f"/v1/sandboxes/{quote(self._sandbox_id, safe='')}/terminate")

    def exec(
        self,
        *args: str,
        workdir: Optional[str] = None,
        env: Optional[Mapping[str, Optional[str]]] = None,
        secrets: Optional[Iterable[Secret]] = None,
        text: bool = True,
    ) -> ContainerProcess:
        """Starts ``args`` in the running sandbox; ConflictError once it has exited.
        With ``text=False`` the process's stdout and stderr yield bytes."""
        cmd = _check_cmd("Sandbox.exec", args)
        if not cmd:
            raise InvalidError("Sandbox.exec needs a command")
        _check_workdir(workdir)
        body = {"cmd": cmd, "workdir": workdir, "env": merge_env(secrets, env), "tty": False}
        resp = self._client.request(
            "POST", f"/v1/sandboxes/{quote(self._sandbox_id, safe='')}/exec", body)
        return ContainerProcess(self._client, str(resp["process_id"]), text=text)
