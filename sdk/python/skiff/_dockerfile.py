"""A Dockerfile reader for ``Image.from_dockerfile``: the file becomes Skiff
image steps, built by the server like any other image's.

Supported: FROM (the images Skiff has: ``debian:bookworm[-slim]``,
``debian:12*`` and ``python:3.11*`` are Skiff's debian_slim, ``scratch`` is
empty), RUN (shell and JSON forms), ENV (``K V`` and ``K=V ...``), ARG (with
defaults, overridden by ``build_args``), WORKDIR, COPY and ADD of local files
in the build context, USER, ENTRYPOINT and CMD; comments, ``\\`` line
continuations and parser directives such as ``# syntax=`` (ignored).
Anything else is an InvalidError naming the instruction and its line, so a
Dockerfile never builds into something other than what it says.

Variables are substituted as Docker does: ``$V``, ``${V}``, ``${V:-word}``
and ``${V:+word}`` in FROM, ENV, ARG, WORKDIR, COPY, ADD and USER, with the
ARG and ENV values known at that line.  RUN, CMD and ENTRYPOINT are left to
the shell: a RUN step gets the ARG values in its env (not kept in the
image), ENV values are in the image config.
"""

from __future__ import annotations

import glob
import json
import os
import posixpath
import re
import shlex
from typing import Any, Optional

from .exception import InvalidError

_KNOWN_FROM = (
    (re.compile(r"debian:(bookworm|bookworm-slim|12([.\-][\w.\-]*)?)"), "debian_slim"),
    (re.compile(r"(docker\.io/)?(library/)?python:3\.11([.\-][\w.\-]*)?"), "debian_slim"),
    (re.compile(r"(docker\.io/)?(library/)?debian:(bookworm|bookworm-slim|12([.\-][\w.\-]*)?)"),
     "debian_slim"),
    (re.compile(r"scratch"), "scratch"),
)
_UNSUPPORTED = {"LABEL", "EXPOSE", "HEALTHCHECK", "VOLUME", "STOPSIGNAL", "ONBUILD", "SHELL",
                "MAINTAINER"}
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:[-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


class _Err(InvalidError):
    pass


def _lines(text: str) -> list[tuple[int, str]]:
    """(line number, instruction text) with continuations joined and
    comment lines (also those inside a continuation) dropped."""
    out: list[tuple[int, str]] = []
    cur: list[str] = []
    start = 0
    for no, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and cur):
            continue
        if not stripped:
            continue
        if not cur:
            start = no
        if stripped.endswith("\\"):
            cur.append(raw.rstrip()[:-1])
            continue
        cur.append(raw)
        out.append((start, " ".join(p.strip() for p in cur)))
        cur = []
    if cur:
        out.append((start, " ".join(p.strip() for p in cur)))
    return out


def _directives(text: str) -> None:
    for raw in text.splitlines():
        m = re.fullmatch(r"\s*#\s*(\w+)\s*=\s*(.*?)\s*", raw)
        if not m:
            return
        if m.group(1).lower() == "escape" and m.group(2) != "\\":
            raise InvalidError(f"Dockerfile: the parser directive escape={m.group(2)} is not "
                               "supported (only the default, a backslash)")


def substitute(s: str, vars: dict[str, str]) -> str:
    """Docker's variable substitution outside single quotes; ``\\$`` is a ``$``."""
    out, i, quote = [], 0, ""
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s) and s[i + 1] == "$":
            out.append("\\$")
            i += 2
            continue
        if c == "'" and quote != '"':
            quote = "" if quote == "'" else "'"
        elif c == '"' and quote != "'":
            quote = "" if quote == '"' else '"'
        if c == "$" and quote != "'":
            m = _VAR.match(s, i)
            if m:
                name = m.group(1) or m.group(4)
                val = vars.get(name)
                if m.group(2) == ":-":
                    val = val if val else m.group(3)
                elif m.group(2) == ":+":
                    val = m.group(3) if val else ""
                out.append(val or "")
                i = m.end()
                continue
        out.append(c)
        i += 1
    return "".join(out)


def _words(s: str, vars: dict[str, str]) -> list[str]:
    try:
        return shlex.split(substitute(s, vars), comments=False, posix=True)
    except ValueError as e:
        raise _Err(f"{e} in {s!r}") from None


def _json_form(rest: str) -> Optional[list[str]]:
    if not rest.startswith("["):
        return None
    try:
        argv = json.loads(rest)
    except ValueError:
        return None
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        return None
    return argv


def _pairs(rest: str, vars: dict[str, str], what: str) -> dict[str, str]:
    words = _words(rest, vars)
    if not words:
        raise _Err(f"{what} needs a name")
    if "=" not in words[0]:
        if what == "ARG":
            return {w: "" for w in words} if len(words) == 1 else _bad_pairs(what)
        # ENV K V: the rest of the line is the value.
        return {words[0]: " ".join(words[1:])}
    out: dict[str, str] = {}
    for w in words:
        k, eq, v = w.partition("=")
        if not eq or not k:
            _bad_pairs(what)
        out[k] = v
    return out


def _bad_pairs(what: str) -> dict[str, str]:
    raise _Err(f"{what} takes NAME=VALUE pairs (or, for ENV, NAME VALUE)")


def _flags(words: list[str], allowed: tuple[str, ...], what: str) -> list[str]:
    while words and words[0].startswith("--"):
        flag = words[0].split("=", 1)[0]
        if flag not in allowed:
            raise _Err(f"{what} {flag} is not supported")
        words = words[1:]
    return words


class Parsed:
    """What a Dockerfile says: a base spec and the ops that follow, each a
    tuple ``(kind, ...)`` that ``Image`` turns into its step."""

    def __init__(self) -> None:
        self.base: Optional[dict[str, Any]] = None
        self.ops: list[tuple[Any, ...]] = []


def parse(text: str, context_dir: str, build_args: dict[str, str],
          name: str = "Dockerfile", base: Optional[dict[str, Any]] = None) -> Parsed:
    """Reads ``text``; with ``base`` given, the lines come after that base
    (``from_registry(setup_dockerfile_commands=...)``) and FROM is refused."""
    _directives(text)
    p = Parsed()
    p.base = base
    global_args: dict[str, str] = {}
    args: dict[str, str] = {}       # ARGs declared after FROM
    env: dict[str, str] = {}
    workdir = "/"
    for no, line in _lines(text):
        instr, _, rest = line.strip().partition(" ")
        instr, rest = instr.upper(), rest.strip()
        try:
            if p.base is None and instr not in ("FROM", "ARG"):
                raise _Err(f"{instr} before FROM")
            scope = {**args, **env}
            if instr == "FROM":
                if base is not None:
                    raise _Err("FROM is not allowed here: the base is the registry image")
                if p.base is not None:
                    raise _Err("a second FROM (multi-stage builds) is not supported")
                words = _flags(_words(rest, global_args), (), "FROM")
                if len(words) == 3 and words[1].upper() == "AS":
                    words = words[:1]
                if len(words) != 1:
                    raise _Err(f"FROM takes one image, got {rest!r}")
                p.base = _base(words[0])
            elif instr == "ARG":
                for k, default in _pairs(rest, {**global_args, **scope}, "ARG").items():
                    has_default = "=" in rest
                    if p.base is None:
                        global_args[k] = build_args.get(k, default)
                    else:
                        val = build_args.get(k, default if has_default else global_args.get(k, ""))
                        args[k] = val
            elif instr == "RUN":
                if rest.startswith("<<") or re.search(r"<<-?\s*['\"]?\w+['\"]?\s*$", rest):
                    raise _Err("heredocs (RUN <<EOF) are not supported; write the commands "
                               "on RUN lines")
                if rest.startswith("--"):
                    flag = rest.split()[0].split("=", 1)[0]
                    raise _Err(f"RUN {flag} is not supported")
                argv = _json_form(rest)
                cmd = shlex.join(argv) if argv is not None else rest
                if not cmd:
                    raise _Err("RUN needs a command")
                p.ops.append(("run", line.strip(), [cmd], dict(args)))
            elif instr == "ENV":
                vars = _pairs(rest, scope, "ENV")
                env.update(vars)
                p.ops.append(("env", vars))
            elif instr == "WORKDIR":
                words = _words(rest, scope)
                if len(words) != 1:
                    raise _Err(f"WORKDIR takes one path, got {rest!r}")
                workdir = posixpath.normpath(posixpath.join(workdir, words[0]))
                p.ops.append(("workdir", workdir))
            elif instr == "USER":
                words = _words(rest, scope)
                if len(words) != 1:
                    raise _Err(f"USER takes one user, got {rest!r}")
                p.ops.append(("user", words[0]))
            elif instr in ("ENTRYPOINT", "CMD"):
                argv = _json_form(rest)
                if argv is None:
                    argv = ["/bin/sh", "-c", rest]
                p.ops.append((instr.lower(), argv))
            elif instr in ("COPY", "ADD"):
                p.ops.extend(_copy(instr, rest, scope, context_dir, workdir))
            elif instr in _UNSUPPORTED:
                raise _Err(f"{instr} is not supported by Skiff's Dockerfile reader; remove it "
                           "(ports, labels and health checks have no meaning for Skiff images)")
            else:
                raise _Err(f"unknown instruction {instr}")
        except _Err as e:
            raise InvalidError(f"{name} line {no}: {e}") from None
    if p.base is None:
        raise InvalidError(f"{name}: no FROM instruction")
    return p


def _base(ref: str) -> dict[str, Any]:
    for rx, base in _KNOWN_FROM:
        if rx.fullmatch(ref):
            if base == "debian_slim":
                return {"base": "debian_slim", "python_version": None}
            return {"base": base}
    raise _Err(f"FROM {ref}: Skiff builds only on the images it has (debian:bookworm, "
               "debian:bookworm-slim, debian:12*, python:3.11* -- all Skiff's debian_slim -- "
               "and scratch); for another image, use skiff.Image.from_registry with a local "
               "OCI layout or `docker save` archive and add the steps in Python")


def _copy(instr: str, rest: str, scope: dict[str, str], ctx: str,
          workdir: str) -> list[tuple[Any, ...]]:
    argv = _json_form(rest)
    if argv is not None:
        words = [substitute(a, scope) for a in argv]
    else:
        words = _words(rest, scope)
    words = _flags(words, ("--link",), instr)
    if len(words) < 2:
        raise _Err(f"{instr} needs a source and a destination")
    *srcs, dest = words
    if not posixpath.isabs(dest):
        dest = posixpath.join(workdir, dest)
    into_dir = dest.endswith("/") or len(srcs) > 1
    dest = posixpath.normpath(dest)
    ctx_real = os.path.realpath(ctx)
    ops: list[tuple[Any, ...]] = []
    for src in srcs:
        if re.match(r"^[a-z][a-z0-9+.-]*://", src) or src.startswith("git@"):
            raise _Err(f"{instr} of a URL ({src}) is not supported: Skiff's builds only read "
                       "local files; download it with RUN (curl, wget) instead")
        pattern = os.path.join(ctx, src)
        matches = sorted(glob.glob(pattern)) if glob.has_magic(src) else [pattern]
        if not matches or not os.path.lexists(matches[0]):
            raise _Err(f"{instr} {src}: no such file in the build context {ctx}")
        if len(matches) > 1:
            into_dir = True
        for m in matches:
            real = os.path.realpath(m)
            if real != ctx_real and not real.startswith(ctx_real + os.sep):
                raise _Err(f"{instr} {src}: outside the build context {ctx}")
            if instr == "ADD" and os.path.isfile(real) and re.search(
                    r"\.(tar|tgz|tar\.gz|tar\.bz2|tbz2|tar\.xz|txz)$", real):
                raise _Err(f"ADD of the archive {src} would unpack it, which Skiff does "
                           "not do; use COPY and RUN tar")
            if os.path.isdir(real):
                target = dest
            elif into_dir:
                target = posixpath.join(dest, os.path.basename(m))
            else:
                target = dest
            rel = os.path.relpath(real, ctx_real).replace(os.sep, "/")
            ops.append(("copy", real, target, "" if rel == "." else rel,
                        f"{instr} {src} {dest}"))
    return ops
