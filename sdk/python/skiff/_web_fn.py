"""``@fastapi_endpoint`` functions without a web framework (kind ``function``).

The function's parameters are read once, at load time, into ``_Param``s:
query parameters fill them by name, converted by annotation (int, float,
bool, str, Optional of those, list of those from repeated values); a JSON
body goes whole to a parameter annotated dict, list, a dataclass or a
pydantic model, or else fills parameters from its keys.  What FastAPI would
refuse is a 422 shaped as FastAPI's (``{"detail": [{"loc", "msg", "type"}]}``).

A function whose parameters need FastAPI itself (an annotation or default
from fastapi, starlette or pydantic, such as ``request: Request``), or an
endpoint with ``docs``, is wrapped in a FastAPI app and served as ASGI
(skiff._web_async).

Return values: str is text/plain, bytes application/octet-stream, a
generator (sync or async) a streamed body (text/event-stream when its first
item looks like server-sent events), Starlette-like responses (duck-typed:
``status_code`` with ``body`` or ``body_iterator``) what they say, anything
else JSON.  An exception with ``status_code`` and ``detail``
(HTTPException) becomes that status; any other a 500.
"""

from __future__ import annotations

import json
import sys
import typing
from typing import Any, Callable, Optional

from skiff import _container as C
from skiff import _web as W

_MISSING: Any = object()
_END: Any = object()

_JSON = "application/json"
_BINARY = "application/octet-stream"
_SSE_PREFIXES = (b"data:", b"event:", b"id:", b":")
_FRAMEWORKS = ("fastapi", "starlette", "pydantic")
_CORS = ["access-control-allow-origin", "*"]


class _Invalid(Exception):
    """The request does not fit the function's parameters: a 422."""

    def __init__(self, errors: "list[dict[str, Any]]") -> None:
        super().__init__("request validation failed")
        self.errors = errors


class _Bad(Exception):
    def __init__(self, kind: str, msg: str) -> None:
        super().__init__(msg)
        self.kind = kind
        self.msg = msg


class _Misroute(Exception):
    def __init__(self, status: int, detail: str, method: str = "") -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.method = method


# --- converters --------------------------------------------------------------

def _int(v: str) -> int:
    try:
        return int(v)
    except ValueError:
        raise _Bad("int_parsing", "Input should be a valid integer, unable to parse "
                                  "string as an integer") from None


def _float(v: str) -> float:
    try:
        return float(v)
    except ValueError:
        raise _Bad("float_parsing", "Input should be a valid number, unable to parse "
                                    "string as a number") from None


_TRUE = frozenset(("1", "true", "yes", "on", "t", "y"))
_FALSE = frozenset(("0", "false", "no", "off", "f", "n"))


def _bool(v: str) -> bool:
    low = v.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise _Bad("bool_parsing", "Input should be a valid boolean, unable to interpret input")


_SCALAR: "dict[Any, Optional[Callable[[str], Any]]]" = {
    int: _int, float: _float, bool: _bool, str: None, typing.Any: None}


def _from_json(conv: Optional[Callable[[str], Any]], v: Any) -> Any:
    """A value from a JSON body for a scalar parameter."""
    if conv is None:
        return v
    if isinstance(v, str):
        return conv(v)
    t = type(v)
    if conv is _int and (t is int or (t is float and v.is_integer())):
        return int(v)
    if conv is _float and t in (int, float):
        return float(v)
    if conv is _bool and (t is bool or (t is int and v in (0, 1))):
        return bool(v)
    try:
        conv("\0")         # no value converts from this: raises _Bad with the right words
    except _Bad as b:
        raise _Bad(b.kind, b.msg) from None
    raise AssertionError


class _Param:
    __slots__ = ("name", "required", "conv", "many", "body", "make")

    def __init__(self, name: str, required: bool) -> None:
        self.name = name
        self.required = required
        self.conv: Optional[Callable[[str], Any]] = None
        self.many = False
        self.body = False
        self.make: Optional[Callable[[Any], Any]] = None   # dict/list check or model


def _from_framework(obj: Any) -> bool:
    mod = getattr(obj, "__module__", None) if isinstance(obj, type) else type(obj).__module__
    return isinstance(mod, str) and mod.split(".")[0] in _FRAMEWORKS


def _describe(p: _Param, ann: Any) -> bool:
    """Fill `p` from annotation `ann`; True when it needs FastAPI."""
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        args = typing.get_args(ann)
        return any(_from_framework(m) for m in args[1:]) or _describe(p, args[0])
    if origin is typing.Union or type(ann).__name__ == "UnionType":
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        return _describe(p, args[0]) if len(args) == 1 else False
    if ann in _SCALAR:
        p.conv = _SCALAR[ann]
        return False
    if ann is dict or origin is dict:
        p.body, p.make = True, _need(dict, "dict_type", "Input should be a valid dictionary")
        return False
    if ann in (list, set, tuple) or origin in (list, set, tuple):
        args = typing.get_args(ann)
        if args and args[0] in _SCALAR:
            p.many, p.conv = True, _SCALAR[args[0]]
        else:
            p.body, p.make = True, _need(list, "list_type", "Input should be a valid list")
        return False
    if isinstance(ann, type):
        if _from_framework(ann):
            return True
        if any(getattr(b, "__module__", "").startswith("pydantic") for b in ann.__mro__[1:]):
            p.body, p.make = True, _model(ann)
            return False
        if hasattr(ann, "__dataclass_fields__"):
            p.body, p.make = True, lambda v, cls=ann: cls(**v)
            return False
    return _from_framework(ann)


def _need(t: type, kind: str, msg: str) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if not isinstance(v, t):
            raise _Bad(kind, msg)
        return v
    return check


def _model(cls: Any) -> Callable[[Any], Any]:
    validate = getattr(cls, "model_validate", None) or getattr(cls, "parse_obj", None)

    def make(v: Any) -> Any:
        try:
            return validate(v) if validate is not None else cls(**v)
        except Exception as e:
            errors = getattr(e, "errors", None)
            if not callable(errors):
                raise
            raise _Invalid([{k: x for k, x in err.items() if k != "url"}
                            for err in errors()]) from None
    return make


def analyze(f: Callable[..., Any]) -> "tuple[list[_Param], bool]":
    """The function's parameters, and whether it needs FastAPI."""
    code = getattr(f, "__code__", None)
    if code is None or code.co_posonlyargcount or not hasattr(f, "__defaults__"):
        return _analyze_inspect(f)
    n = code.co_argcount
    names = code.co_varnames[:n + code.co_kwonlyargcount]
    ndef = len(f.__defaults__ or ())
    kwdefs = f.__kwdefaults__ or {}
    defaults = dict(zip(names[n - ndef:n], f.__defaults__ or ()))
    defaults.update(kwdefs)
    anns = dict(getattr(f, "__annotations__", None) or {})
    if any(isinstance(a, str) for a in anns.values()):
        try:
            anns = typing.get_type_hints(f, include_extras=True)
        except Exception:
            anns = {k: _eval_ann(f, a) for k, a in anns.items()}
    params: "list[_Param]" = []
    framework = False
    for name in names:
        d = defaults.get(name, _MISSING)
        p = _Param(name, d is _MISSING)
        if d is not _MISSING and _from_framework(d):
            framework = True
        if name in anns and _describe(p, anns[name]):
            framework = True
        params.append(p)
    return params, framework


def _eval_ann(f: Any, a: Any) -> Any:
    """One string annotation, when it can be resolved alone; else Any."""
    if not isinstance(a, str):
        return a
    try:
        return eval(a, getattr(f, "__globals__", {}))
    except Exception:
        return typing.Any


def _analyze_inspect(f: Callable[..., Any]) -> "tuple[list[_Param], bool]":
    import inspect
    params: "list[_Param]" = []
    framework = False
    for prm in inspect.signature(f).parameters.values():
        if prm.kind in (prm.VAR_POSITIONAL, prm.VAR_KEYWORD):
            continue
        p = _Param(prm.name, prm.default is prm.empty)
        if prm.default is not prm.empty and _from_framework(prm.default):
            framework = True
        if prm.annotation is not prm.empty and _describe(p, prm.annotation):
            framework = True
        params.append(p)
    return params, framework


# --- requests ----------------------------------------------------------------

def _parse_qs(qs: str) -> "dict[str, list[str]]":
    d: "dict[str, list[str]]" = {}
    for part in qs.split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        if "%" in part or "+" in part:
            from urllib.parse import unquote_plus
            k, v = unquote_plus(k), unquote_plus(v)
        got = d.get(k)
        if got is None:
            d[k] = [v]
        else:
            got.append(v)
    return d


def _json_default(o: Any) -> Any:
    dump = getattr(o, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if type(o).__module__.startswith("pydantic") or hasattr(type(o), "__fields__"):
        d = getattr(o, "dict", None)
        if callable(d):
            return d()
    dc = sys.modules.get("dataclasses")
    if dc is not None and dc.is_dataclass(o) and not isinstance(o, type):
        return dc.asdict(o)
    if isinstance(o, (set, frozenset)):
        return list(o)
    if isinstance(o, (bytes, bytearray)):
        return bytes(o).decode("utf-8", "replace")
    iso = getattr(o, "isoformat", None)
    if callable(iso):
        return iso()
    value = getattr(o, "value", _MISSING)
    if value is not _MISSING and isinstance(o, sys.modules["enum"].Enum):
        return value
    name = type(o).__name__
    if name == "Decimal":
        return int(o) if o == o.to_integral_value() else float(o)
    if name in ("UUID", "PosixPath", "PurePosixPath"):
        return str(o)
    raise TypeError(f"Object of type {name} is not JSON serializable")


_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                           default=_json_default).encode


def _template(ct: str, cors: bool) -> bytes:
    h = [["content-type", ct]] + ([_CORS] if cors else [])
    hs = json.dumps(h, separators=(",", ":")).encode().replace(b"%", b"%%")
    return b'{"t":"wres","id":%d,"s":200,"h":' + hs + b',"end":true}'


def _has_origin(hdr: "dict[str, Any]") -> bool:
    for k, _ in hdr.get("h") or ():
        if k == "origin":
            return True
    return False


def _chunk(item: Any) -> bytes:
    if isinstance(item, str):
        return item.encode()
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    raise TypeError(f"a streamed response's items must be str or bytes, not "
                    f"{type(item).__name__}")


def _response_headers(r: Any, full: bool) -> "list[list[str]]":
    raw = getattr(r, "raw_headers", None)
    if raw is not None:
        pairs = [[W.from_bytes(k), W.from_bytes(v)] for k, v in raw]
    else:
        h = getattr(r, "headers", None) or {}
        items = h.items() if hasattr(h, "items") else h
        pairs = [[str(k), str(v)] for k, v in items]
    if full:    # the gateway sets Content-Length of a one-frame response
        pairs = [p for p in pairs if p[0].lower() != "content-length"]
    if not any(p[0].lower() == "content-type" for p in pairs):
        mt = getattr(r, "media_type", None)
        if mt:
            pairs.append(["content-type", str(mt)])
    return pairs


class _Endpoint:
    def __init__(self, f: Callable[..., Any], params: "list[_Param]",
                 web: "dict[str, Any]") -> None:
        self.f = f
        self.method = str(web.get("method") or "GET").upper()
        self.params = params
        bodies = [p for p in params if p.body]
        self.body_params = bodies
        self.single_body = len(bodies) == 1
        self.tmpl = {(ct, cors): _template(ct, cors) for ct in (W.TEXT, _JSON, _BINARY)
                     for cors in (False, True)}

    # Calls -------------------------------------------------------------------

    def call(self, hdr: "dict[str, Any]", body: bytes) -> Any:
        """Check the route, build the arguments and call the function."""
        p = hdr["p"]
        if p != "/" and not p.startswith("/?"):
            raise _Misroute(404, "Not Found")
        m = hdr["m"]
        if m != self.method and not (m == "HEAD" and self.method == "GET"):
            raise _Misroute(405, "Method Not Allowed", self.method)
        if not self.params:
            return self.f()
        return self.f(**self.kwargs(p, hdr, body))

    def kwargs(self, p: str, hdr: "dict[str, Any]", body: bytes) -> "dict[str, Any]":
        i = p.find("?")
        q = _parse_qs(p[i + 1:]) if i >= 0 else None
        jb = _MISSING
        if body:
            ct = W.header(hdr, "content-type")
            if ct is None or "json" in ct:
                try:
                    jb = json.loads(body)
                except ValueError as e:
                    raise _Invalid([{"type": "json_invalid", "loc": ["body", getattr(e, "pos", 0)],
                                     "msg": "JSON decode error", "input": {},
                                     "ctx": {"error": getattr(e, "msg", str(e))}}]) from None
        kw: "dict[str, Any]" = {}
        errors: "list[dict[str, Any]]" = []
        fill_from_body = isinstance(jb, dict) and not self.body_params
        for prm in self.params:
            name = prm.name
            if prm.body:
                loc = ["body"] if self.single_body else ["body", name]
                v = jb if self.single_body or jb is _MISSING else (
                    jb.get(name, _MISSING) if isinstance(jb, dict) else _MISSING)
                if v is _MISSING:
                    if prm.required:
                        errors.append({"type": "missing", "loc": loc, "msg": "Field required",
                                       "input": None})
                    continue
                try:
                    kw[name] = prm.make(v) if prm.make is not None else v
                except _Bad as b:
                    errors.append({"type": b.kind, "loc": loc, "msg": b.msg, "input": v})
                except _Invalid as inv:
                    for err in inv.errors:
                        err["loc"] = loc + list(err.get("loc") or ())
                        errors.append(err)
                continue
            vs = q.get(name) if q else None
            if vs is not None:
                src, raw = "query", (vs if prm.many else vs[-1])
                conv = prm.conv
                try:
                    if prm.many:
                        kw[name] = vs if conv is None else [conv(x) for x in vs]
                    else:
                        kw[name] = raw if conv is None else conv(raw)
                except _Bad as b:
                    errors.append({"type": b.kind, "loc": [src, name], "msg": b.msg, "input": raw})
            elif fill_from_body and name in jb:
                raw = jb[name]
                try:
                    if prm.many:
                        if not isinstance(raw, list):
                            raise _Bad("list_type", "Input should be a valid list")
                        kw[name] = [_from_json(prm.conv, x) for x in raw]
                    else:
                        kw[name] = _from_json(prm.conv, raw)
                except _Bad as b:
                    errors.append({"type": b.kind, "loc": ["body", name], "msg": b.msg,
                                   "input": raw})
            elif prm.required:
                errors.append({"type": "missing", "loc": ["query", name], "msg": "Field required",
                               "input": None})
        if errors:
            raise _Invalid(errors)
        return kw

    # Responses ---------------------------------------------------------------

    def error(self, sid: int, hdr: "dict[str, Any]", e: BaseException) -> bytes:
        """The one-frame response for an exception out of the call."""
        if isinstance(e, C._Terminate):
            raise e
        cors = [_CORS] if _has_origin(hdr) else []
        if isinstance(e, _Invalid):
            body = json.dumps({"detail": e.errors}, separators=(",", ":"), default=str)
            return W.wres(sid, 422, [["content-type", _JSON]] + cors, body.encode())
        if isinstance(e, _Misroute):
            h = [["content-type", _JSON]] + cors
            if e.method:
                h.append(["allow", e.method])
            return W.wres(sid, e.status, h, json.dumps({"detail": e.detail}).encode())
        status = getattr(e, "status_code", None)
        detail = getattr(e, "detail", _MISSING)
        if isinstance(status, int) and detail is not _MISSING:
            extra = getattr(e, "headers", None) or {}
            h = [["content-type", _JSON]] + [[str(k), str(v)] for k, v in extra.items()] + cors
            try:
                body = _encode({"detail": detail}).encode()
            except Exception:
                body = json.dumps({"detail": str(detail)}).encode()
            return W.wres(sid, status, h, body)
        W.log_exception(e, f"Exception in web endpoint {hdr.get('m')} {hdr.get('root', '')}"
                           f"{hdr.get('p')}:")
        return W.wres(sid, 500, [["content-type", W.TEXT]] + cors, b"Internal Server Error")

    def full_frame(self, sid: int, hdr: "dict[str, Any]", r: Any) -> Optional[bytes]:
        """The one-frame response for return value `r`; None when it streams."""
        t = type(r)
        if t is str:
            body, ct = r.encode(), W.TEXT
        elif t is dict or t is list or r is None or t is int or t is bool or t is float:
            body, ct = _encode(r).encode(), _JSON
        elif t is bytes:
            body, ct = r, _BINARY
        else:
            return self._other_frame(sid, hdr, r)
        h = self.tmpl[ct, _has_origin(hdr)] % sid
        return b"".join((W._FRAME.pack(len(h), len(body)), h, body))

    def _other_frame(self, sid: int, hdr: "dict[str, Any]", r: Any) -> Optional[bytes]:
        if hasattr(r, "__next__") or hasattr(r, "__anext__"):
            return None
        status = getattr(r, "status_code", None)
        if isinstance(status, int):
            if getattr(r, "body_iterator", None) is not None:
                return None
            body = getattr(r, "body", None)
            if body is not None:
                h = _response_headers(r, True)
                if _has_origin(hdr):
                    h.append(_CORS)
                return W.wres(sid, status, h, body.encode() if isinstance(body, str) else body)
        if isinstance(r, (bytearray, memoryview)):
            body, ct = bytes(r), _BINARY
        else:
            body, ct = _encode(r).encode(), _JSON
        h = self.tmpl[ct, _has_origin(hdr)] % sid
        return b"".join((W._FRAME.pack(len(h), len(body)), h, body))

    def stream_parts(self, hdr: "dict[str, Any]",
                     r: Any) -> "tuple[int, list[list[str]], Any, bool]":
        """(status, headers, iterator, sniff) of a streamed result; sniff:
        the first item picks the content type."""
        it = getattr(r, "body_iterator", None)
        if it is not None:
            status, headers, sniff = int(r.status_code), _response_headers(r, False), False
        else:
            it, status, headers, sniff = r, 200, [], True
        if _has_origin(hdr):
            headers.append(_CORS)
        return status, headers, it, sniff


def _first_headers(headers: "list[list[str]]", first: bytes, sniff: bool) -> "list[list[str]]":
    if not sniff:
        return headers
    ct = "text/event-stream" if first.startswith(_SSE_PREFIXES) else W.TEXT
    return [["content-type", ct]] + headers


# --- running on threads -------------------------------------------------------

def _stream_sync(ep: _Endpoint, s: Any, r: Any) -> None:
    hdr = s.hdr
    status, headers, it, sniff = ep.stream_parts(hdr, r)
    if hasattr(it, "__anext__"):
        _private_loop().run_until_complete(_stream_async_blocking(ep, s, status, headers, it, sniff))
        return
    it = iter(it)
    try:
        first = next(it, _END)
        if first is _END:
            s.start(status, _first_headers(headers, b"", sniff), b"", end=True)
            return
        first = _chunk(first)
    except BaseException as e:
        s.complete(ep.error(s.id, hdr, e))
        _close(it)
        return
    try:
        s.start(status, _first_headers(headers, first, sniff), first, end=False)
        for item in it:
            s.data(_chunk(item))
        s.data(b"", end=True)
    except W.Aborted:
        pass
    except BaseException as e:
        W.log_exception(e, f"Exception in streamed response of {hdr.get('m')} {hdr.get('p')}:")
    finally:
        _close(it)


async def _stream_async_blocking(ep: _Endpoint, s: Any, status: int, headers: Any,
                                 it: Any, sniff: bool) -> None:
    """An async iterator returned by a sync function, drained on this
    thread's own loop; the window waits block the thread."""
    try:
        first = _chunk(await it.__anext__())
    except StopAsyncIteration:
        s.start(status, _first_headers(headers, b"", sniff), b"", end=True)
        return
    except BaseException as e:
        s.complete(ep.error(s.id, s.hdr, e))
        await _aclose(it)
        return
    try:
        s.start(status, _first_headers(headers, first, sniff), first, end=False)
        async for item in it:
            s.data(_chunk(item))
        s.data(b"", end=True)
    except W.Aborted:
        pass
    except BaseException as e:
        W.log_exception(e, f"Exception in streamed response of {s.hdr.get('m')} {s.hdr.get('p')}:")
    finally:
        await _aclose(it)


def _close(it: Any) -> None:
    close = getattr(it, "close", None)
    if callable(close):
        try:
            close()
        except Exception as e:
            W.log_exception(e, "Exception closing a streamed response:")


async def _aclose(it: Any) -> None:
    close = getattr(it, "aclose", None)
    if callable(close):
        try:
            await close()
        except Exception as e:
            W.log_exception(e, "Exception closing a streamed response:")


_loops: Any = None


def _private_loop() -> Any:
    global _loops
    import asyncio
    import threading
    if _loops is None:
        _loops = threading.local()
    loop = getattr(_loops, "loop", None)
    if loop is None:
        loop = _loops.loop = asyncio.new_event_loop()
    return loop


def _handle_sync(ep: _Endpoint, s: Any) -> None:
    hdr = s.hdr
    body = s.read_all()
    try:
        r = ep.call(hdr, body)
        fr = ep.full_frame(s.id, hdr, r)
    except BaseException as e:
        s.complete(ep.error(s.id, hdr, e))
        return
    if fr is not None:
        s.complete(fr)
    else:
        _stream_sync(ep, s, r)


def _make_inline(rt: Any, ep: _Endpoint) -> Callable[[Any, bytes, bytearray], None]:
    """The fast path: called on the main thread with a complete request."""
    call = ep.call
    full_frame = ep.full_frame

    def inline(hdr: "dict[str, Any]", body: bytes, out: bytearray) -> None:
        sid = hdr["id"]
        try:
            r = call(hdr, body)
            fr = full_frame(sid, hdr, r)
        except BaseException as e:
            out += ep.error(sid, hdr, e)
            return
        if fr is not None:
            out += fr
            return
        # It streams: a worker thread sends it while this thread reads acks;
        # later requests wait behind it (rt.streams is not empty).
        s = rt.thread_stream(hdr, b"")
        rt.submit(lambda s: _stream_sync(ep, s, r), s)

    return inline


# --- setup -------------------------------------------------------------------------

def setup(rt: Any, f: Callable[..., Any]) -> Optional[str]:
    params, framework = analyze(f)
    web = rt.web
    if framework or web.get("docs"):
        from skiff import _web_async
        return _web_async.setup_asgi(rt, None, app=_fastapi_app(f, web), cors=True)
    ep = _Endpoint(f, params, web)
    flags = C._code_flags(f)
    if flags & (C._CO_COROUTINE | C._CO_ASYNC_GENERATOR):
        from skiff import _web_async
        _web_async.setup_function(rt, ep)
        return None
    if rt.max_inputs == 1 and not flags & C._CO_GENERATOR:
        rt.inline = _make_inline(rt, ep)

    def start(hdr: "dict[str, Any]", body: bytes) -> None:
        rt.submit(lambda s: _handle_sync(ep, s), rt.thread_stream(hdr, body))

    rt.start = start
    return None


def _fastapi_app(f: Callable[..., Any], web: "dict[str, Any]") -> Any:
    try:
        from fastapi import FastAPI
    except ImportError as e:
        raise ImportError(
            "this web endpoint needs FastAPI (a parameter or default comes from "
            "fastapi, starlette or pydantic, or docs=True), but the module `fastapi` "
            "cannot be imported in the container: add it to the image, e.g. "
            "Image.debian_slim().pip_install(\"fastapi\")") from e
    docs = bool(web.get("docs"))
    app = FastAPI(docs_url="/docs" if docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if docs else None)
    app.api_route("/", methods=[str(web.get("method") or "GET").upper()])(f)
    return app
