"""A stand-in for `skiff server`'s apps-and-functions API (docs/api.md), for
testing the SDK's client side without containers.

It speaks HTTP/1.1 with keep-alive on a unix socket, like the real server,
and runs registered functions in this process on a thread pool: it imports
the function by module and qualname (from ``file`` when the module is not
imported yet) or unpickles it when serialized.  It is no scheduler: every
input runs at once on a thread; retries rerun at once, up to max_retries.
Each input also writes a log record, alternating between two fake
containers, so that log printing can be checked.

Test-only; not part of the SDK.
"""

from __future__ import annotations

import base64
import importlib
import importlib.util
import json
import os
import pickle
import socketserver
import struct
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Optional

REC = struct.Struct("<IBI")
FRAME = struct.Struct("<III")


def record(idx: int, status: int, payload: bytes) -> bytes:
    return REC.pack(idx, status, len(payload)) + payload


def error_payload(e: BaseException) -> bytes:
    tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    try:
        exc_bytes: Optional[bytes] = pickle.dumps(e)
        pickle.loads(exc_bytes)
    except Exception:
        exc_bytes = None
    info = {"exc": pickle.loads(exc_bytes) if exc_bytes else None, "type": type(e).__name__,
            "module": type(e).__module__, "repr": repr(e), "traceback": tb}
    try:
        return pickle.dumps(info)
    except Exception:
        info["exc"] = None
        return pickle.dumps(info)


def resolve(body: dict[str, Any]) -> Callable[..., Any]:
    """The callable inputs run: the function; for a class pool, a dispatcher
    ``(method, *args, **kwargs)`` on an instance made and entered here; for a
    batched function, one that calls it with one-element lists."""
    obj = _resolve(body)
    cls = body.get("cls")
    if cls:
        from skiff import cls as cls_mod

        user_cls = getattr(obj, "_skiff_user_cls", obj)
        inst = cls_mod.make_instance(user_cls, pickle.loads(base64.b64decode(cls["params"])))
        cls_mod.run_hooks(inst, "enter")

        def dispatch(method: str, /, *args: Any, **kwargs: Any) -> Any:
            return getattr(inst, method)(*args, **kwargs)
        return dispatch
    f = obj.get_raw_f() if hasattr(obj, "get_raw_f") else obj
    if body.get("batch"):
        def one(*args: Any, **kwargs: Any) -> Any:
            out = f(*[[a] for a in args], **{k: [v] for k, v in kwargs.items()})
            if len(out) != 1:
                raise ValueError(f"the batched function returned {len(out)} results for 1")
            return out[0]
        return one
    return f  # type: ignore[no-any-return]


def item_args(item: tuple[Any, ...]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """(args, kwargs) of an input: a class pool's (method, args, kwargs) gets
    the method name as its first argument (see resolve)."""
    if len(item) == 3:
        return (item[0],) + tuple(item[1]), item[2]
    return item[0], item[1]


def _resolve(body: dict[str, Any]) -> Any:
    if body.get("serialized"):
        return pickle.loads(base64.b64decode(body["pickled_function"]))
    module = body["module"]
    mod = sys.modules.get(module)
    if mod is None or getattr(mod, "__file__", None) != body["file"]:
        # As the container runtime does: `import modal` gives Skiff.
        from skiff import _modal_alias

        _modal_alias.install()
        spec = importlib.util.spec_from_file_location(module, body["file"])
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        sys.modules[module] = mod
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            del sys.modules[module]
            raise
    obj: Any = mod
    for part in body["qualname"].split("."):
        obj = getattr(obj, part)
    return obj


class Call:
    def __init__(self, fc: str, fn: "Fn", kind: str) -> None:
        self.id = fc
        self.fn = fn
        self.kind = kind  # remote, spawn, map, gen
        self.cond = threading.Condition()
        self.outputs: list[bytes] = []
        self.total = 0
        self.finished = 0
        self.last = False
        self.done = False
        self.cancelled = False
        self.result: Optional[tuple[int, bytes]] = None
        self.final: set[int] = set()


class Fn:
    def __init__(self, fid: str, app: "App", body: dict[str, Any]) -> None:
        self.id = fid
        self.app = app
        self.body = body
        self.name = body["name"]
        self.f = resolve(body)
        self.runs = 0
        web = body.get("web")
        # The server's URL of a web endpoint: the label defaults to the name.
        label = (web.get("label") or self.name.lower().replace("_", "-")) if web else None
        self.web_url = f"http://127.0.0.1:8000/{app.name}/{label}" if web else None
        self.autoscaler = {k: body.get(k) for k in (
            "min_containers", "max_containers", "buffer_containers", "scaledown_window")}


class App:
    def __init__(self, aid: str, name: str, detach: bool) -> None:
        self.id = aid
        self.name = name
        self.detach = detach
        self.stopped = False
        self.heartbeats = 0
        self.logs: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        self.functions: dict[str, Fn] = {}


class Fake:
    def __init__(self) -> None:
        self.apps: dict[str, App] = {}
        self.fns: dict[str, Fn] = {}
        self.calls: dict[str, Call] = {}
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(16)
        self.n = 0
        self.requests: list[tuple[str, str]] = []
        self.registrations: list[dict[str, Any]] = []

    def new_id(self, prefix: str) -> str:
        with self.lock:
            self.n += 1
            return f"{prefix}-{self.n:016x}"

    # -- running inputs --------------------------------------------------------

    def log(self, fn: Fn, idx: int) -> None:
        app = fn.app
        with app.cond:
            app.logs.append({"ts": time.time(), "function": fn.name,
                             "container": f"ct-{idx % 2:04d}aaaaaaaaaaaa", "stream": "stdout",
                             "text": f"ran input {idx}\n"})
            app.cond.notify_all()

    def run_one(self, fn: Fn, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, bytes]:
        retries = (fn.body.get("retries") or {}).get("max_retries", 0)
        for attempt in range(retries + 1):
            fn.runs += 1
            try:
                value = fn.f(*args, **kwargs)
                try:
                    return 0, pickle.dumps(value)
                except Exception as e:
                    return 2, json.dumps({"kind": "unpicklable", "message": str(e)}).encode()
            except Exception as e:
                status, payload = 1, error_payload(e)
        return status, payload

    def run_map_input(self, call: Call, idx: int, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> None:
        self.log(call.fn, idx)
        status, payload = self.run_one(call.fn, args, kwargs)
        self.finish(call, idx, status, payload)

    def run_map_batch(self, call: Call, start: int, xs: list[Any]) -> None:
        results = []
        for k, x in enumerate(xs):
            self.log(call.fn, start + k)
            results.append(self.run_one(call.fn, (x,), {}))
        if all(status == 0 for status, _ in results):
            values = [pickle.loads(p) for _, p in results]
            payload = len(values).to_bytes(4, "little") + pickle.dumps(values)
            with call.cond:
                if call.final.intersection(range(start, start + len(xs))):
                    return
                call.final.update(range(start, start + len(xs)))
                call.outputs.append(record(start, 6, payload))
                call.finished += len(xs)
                if call.last and call.finished >= call.total:
                    call.done = True
                call.cond.notify_all()
            return
        for k, (status, p) in enumerate(results):
            self.finish(call, start + k, status, p)

    def finish(self, call: Call, idx: int, status: int, payload: bytes) -> None:
        with call.cond:
            if idx in call.final:
                return
            call.final.add(idx)
            call.outputs.append(record(idx, status, payload))
            call.finished += 1
            if call.last and call.finished >= call.total:
                call.done = True
            call.cond.notify_all()

    def run_gen(self, call: Call, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        n = 0
        try:
            for item in call.fn.f(*args, **kwargs):
                with call.cond:
                    if call.cancelled:
                        return
                    call.outputs.append(record(n, 3, pickle.dumps(item)))
                    call.cond.notify_all()
                n += 1
            rec = record(n, 4, b"")
        except Exception as e:
            rec = record(0, 1, error_payload(e))
        with call.cond:
            call.outputs.append(rec)
            call.done = True
            call.cond.notify_all()

    def run_spawn(self, call: Call, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        status, payload = self.run_one(call.fn, args, kwargs)
        with call.cond:
            if call.result is None:
                call.result = (status, payload)
            call.done = True
            call.cond.notify_all()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: Fake

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def address_string(self) -> str:
        return "unix"

    # -- replies -----------------------------------------------------------------

    def reply(self, status: int, body: bytes = b"", ctype: str = "application/json",
              headers: Optional[dict[str, str]] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def json(self, status: int, obj: Any) -> None:
        self.reply(status, json.dumps(obj).encode())

    def error(self, status: int, code: str, message: str) -> None:
        self.json(status, {"error": {"code": code, "message": message}})

    def body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self) -> None:
        self.route("GET")

    def do_POST(self) -> None:
        self.route("POST")

    # -- routes ------------------------------------------------------------------

    def route(self, method: str) -> None:
        path, _, query = self.path.partition("?")
        q = dict(p.partition("=")[::2] for p in query.split("&") if p)
        parts = path.strip("/").split("/")
        data = self.body()
        f = self.fake
        f.requests.append((method, path))
        try:
            self.dispatch(method, parts, q, data)
        except KeyError as e:
            self.error(404, "not_found", f"no such object {e}")

    def dispatch(self, method: str, parts: list[str], q: dict[str, str], data: bytes) -> None:
        f = self.fake
        if parts[:2] == ["v1", "images"] and method == "POST":
            line = json.dumps({"image_id": "im-fake", "cached": True}).encode() + b"\n"
            return self.reply(200, line, "application/x-ndjson")
        if parts[:2] == ["v1", "apps"]:
            if len(parts) == 2 and method == "POST":
                b = json.loads(data)
                aid = f.new_id("ap")
                f.apps[aid] = App(aid, b["name"], bool(b.get("detach")))
                return self.json(201, {"app_id": aid, "name": b["name"]})
            app = f.apps[parts[2]]
            verb = parts[3] if len(parts) > 3 else ""
            if verb == "" and method == "GET":
                return self.json(200, {"app_id": app.id, "name": app.name,
                                       "function_ids": {n: x.id for n, x in app.functions.items()}})
            if verb == "heartbeat":
                if app.stopped:
                    return self.error(409, "conflict", "stopped")
                app.heartbeats += 1
                return self.json(200, {})
            if verb == "stop":
                with app.cond:
                    app.stopped = True
                    app.cond.notify_all()
                return self.json(200, {})
            if verb == "logs":
                return self.stream_logs(app, q.get("follow") == "1")
        if parts[:2] == ["v1", "functions"]:
            if len(parts) == 2 and method == "POST":
                b = json.loads(data)
                f.registrations.append(b)
                app = f.apps[b["app_id"]]
                fid = f.new_id("fu")
                fn = Fn(fid, app, b)
                f.fns[fid] = fn
                app.functions[fn.name] = fn
                if fn.web_url:
                    return self.json(201, {"function_id": fid, "web_url": fn.web_url})
                return self.json(201, {"function_id": fid})
            fn = f.fns[parts[2]]
            verb = parts[3] if len(parts) > 3 else ""
            if verb == "" and method == "GET":
                return self.json(200, {
                    "function_id": fn.id, "app_id": fn.app.id, "name": fn.name, "backlog": 0,
                    "running_inputs": 0, "containers": 1 if fn.runs else 0, "idle": 0,
                    "busy": 0, "starting": 0, "waiting_for_capacity": False,
                    "cold_starts": 1 if fn.runs else 0, "avg_ms": None, "broken": None,
                    "autoscaler": fn.autoscaler, "web_url": fn.web_url})
            if verb == "autoscaler" and method == "POST":
                b = json.loads(data)
                fn.autoscaler.update(b)
                return self.json(200, {})
            if verb == "remote":
                (item,) = pickle.loads(data)
                args, kwargs = item_args(item)
                status, payload = f.run_one(fn, args, kwargs)
                return self.reply(200, payload, "application/octet-stream",
                                  {"Skiff-Status": str(status)})
            fc = f.new_id("fc")
            if verb == "spawn":
                call = Call(fc, fn, "spawn")
                f.calls[fc] = call
                (item,) = pickle.loads(data)
                args, kwargs = item_args(item)
                f.pool.submit(f.run_spawn, call, args, kwargs)
                return self.json(201, {"function_call_id": fc})
            if verb == "map":
                gen = bool(json.loads(data or b"{}").get("generator"))
                f.calls[fc] = Call(fc, fn, "gen" if gen else "map")
                return self.json(201, {"function_call_id": fc})
        if parts[:2] == ["v1", "calls"]:
            call = f.calls[parts[2]]
            verb = parts[3]
            if verb == "inputs":
                return self.inputs(call, data, q.get("last") == "1")
            if verb == "outputs":
                return self.outputs(call, float(q.get("timeout", "30")))
            if verb == "result":
                return self.result(call, float(q.get("timeout", "0")))
            if verb == "cancel":
                with call.cond:
                    call.cancelled = True
                    if call.kind == "spawn" and call.result is None:
                        call.result = (2, json.dumps({"kind": "cancelled",
                                                      "message": "cancelled"}).encode())
                        call.done = True
                    call.cond.notify_all()
                if call.kind == "map":
                    for i in range(call.total):
                        f.finish(call, i, 2, json.dumps(
                            {"kind": "cancelled", "message": "the call was cancelled"}).encode())
                return self.json(200, {})
        self.error(404, "not_found", f"no route {method} {'/'.join(parts)}")

    def inputs(self, call: Call, data: bytes, last: bool) -> None:
        f = self.fake
        off, accepted = 0, 0
        work = []
        while off < len(data):
            start, count, n = FRAME.unpack_from(data, off)
            off += FRAME.size
            chunk = pickle.loads(data[off:off + n])
            off += n
            if type(chunk) is tuple and chunk[0] == "skiff.args1":
                # One-argument inputs: run as one batch, answered with one
                # status-6 record when all succeed (docs/api.md).
                assert len(chunk[1]) == count, (len(chunk[1]), count)
                work.append((start, None, chunk[1]))
            else:
                assert len(chunk) == count, (len(chunk), count)
                for i, item in enumerate(chunk):
                    args, kwargs = item_args(item)
                    work.append((start + i, args, kwargs))
            accepted += count
        with call.cond:
            if call.last:
                return self.error(409, "conflict", "last already sent")
            call.total += accepted
            if last:
                call.last = True
                if call.finished >= call.total:
                    call.done = True
                    call.cond.notify_all()
        for idx, args, kwargs in work:
            if call.kind == "gen":
                f.pool.submit(f.run_gen, call, args, kwargs)
            elif call.cancelled:
                pass
            elif args is None:
                f.pool.submit(f.run_map_batch, call, idx, kwargs)
            else:
                f.pool.submit(f.run_map_input, call, idx, args, kwargs)
        hint = 16 if call.fn.runs == 0 else 1000
        self.json(200, {"accepted": accepted, "chunk_hint": hint})

    def outputs(self, call: Call, timeout: float) -> None:
        with call.cond:
            deadline = time.monotonic() + timeout
            while not call.outputs and not call.done:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                call.cond.wait(left)
            body = b"".join(call.outputs)
            call.outputs.clear()
            done = call.done
        self.reply(200, body, "application/octet-stream",
                   {"Skiff-Call-Done": "1"} if done else {})

    def result(self, call: Call, timeout: float) -> None:
        with call.cond:
            deadline = time.monotonic() + timeout
            while call.result is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                call.cond.wait(left)
            res = call.result
        if res is None:
            return self.reply(202, b"{}", "application/json", {"Skiff-Status": "pending"})
        self.reply(200, res[1], "application/octet-stream", {"Skiff-Status": str(res[0])})

    def stream_logs(self, app: App, follow: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0
        while True:
            with app.cond:
                while sent >= len(app.logs) and follow and not app.stopped:
                    app.cond.wait(0.5)
                batch = app.logs[sent:]
                sent = len(app.logs)
                stop = not follow or app.stopped
            for rec in batch:
                line = json.dumps(rec).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
            if stop and sent >= len(app.logs):
                break
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def start(path: str) -> tuple[Fake, _Server]:
    """Serves a new Fake on the unix socket path (in daemon threads)."""
    fake = Fake()
    handler = type("BoundHandler", (Handler,), {"fake": fake})
    if os.path.exists(path):
        os.unlink(path)
    srv = _Server(path, handler)
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    return fake, srv


if __name__ == "__main__":  # python3 fakeserver.py SOCKET: serve until killed
    start(sys.argv[1])
    while True:
        time.sleep(3600)

