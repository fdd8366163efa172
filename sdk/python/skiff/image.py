"""Container images, as in Modal: lazy, immutable specs built on the server
when first needed.

``Image.debian_slim()`` describes Debian bookworm with python3; each build
method (``apt_install``, ``pip_install``, ``run_commands``, ``env``,
``add_local_dir(copy=True)``, ...) returns a new Image with one more step
(docs/api.md, "Image build steps and the layer cache").  Nothing is built
when the object is made; the first call that needs the image (a function's
registration, ``Sandbox.create``, ``hydrate()``) asks the server
(``POST /v1/images``), which answers from its layer cache or builds the
missing layers, streaming their output (skiff._image_progress).

Local files enter an image in one of two ways.  ``copy=True`` makes a copy
step: the server copies them into a layer, keyed by their content hash
(skiff._image_files), so editing a file rebuilds from that step on.
``copy=False`` (the default, as in Modal) keeps them out of the image: they
are bind-mounted read-only into each function or sandbox container made from
the image, so an edit needs no build at all.  Those mounts live on the Image
object (``_mounts``) and travel with images built on top of it.

In a container (a function's, or a ``run_function`` build step's) the user's
module is imported again and its image definitions run again, but the local
paths they name do not exist there; they are not checked or hashed then.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import os
import posixpath
import re
import shlex
import shutil
import sys
import threading
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, TextIO, Union

from . import _client
from . import _image_files as F
from ._image_progress import build_spec
from .exception import InvalidError
from .secret import Secret, merge_env

# Debian policy 5.6.7; the server checks the same (and at most 256 names).
_APT_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_APT_NAME_MAX = 128
_ENSURE_PIP = ("python3 -m pip --version >/dev/null 2>&1 || (apt-get update -q && "
               "DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-pip)")
_PIP = "python3 -m pip install --break-system-packages"
_LABEL_MAX = 120
_PY_SOURCE_IGNORE = ["**/__pycache__", "**/*.pyc"]
_ARG_MAX = 100_000   # one argv string: the kernel allows 128 KiB


def _in_container() -> bool:
    return bool(os.environ.get("SKIFF_CONTAINER_ID") or os.environ.get("SKIFF_BUILD_STEP"))


def _label(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _LABEL_MAX else text[:_LABEL_MAX - 3] + "..."


def _strs(what: str, items: Iterable[Any]) -> list[str]:
    """Flattens str and lists/tuples of str (Modal's ``*packages`` style)."""
    out: list[str] = []
    for p in items:
        if isinstance(p, str):
            out.append(p)
            continue
        if not isinstance(p, (list, tuple)):
            raise InvalidError(f"{what} takes str arguments or lists of them, "
                               f"not {type(p).__name__}")
        for x in p:
            if not isinstance(x, str):
                raise InvalidError(f"{what}: {x!r} in {p!r} is not a str")
            out.append(x)
    return out


def _argv(what: str, argv: Any) -> list[str]:
    if isinstance(argv, str) or not isinstance(argv, (list, tuple)) or \
            not all(isinstance(a, str) for a in argv):
        raise InvalidError(f"{what} takes a list of str, got {argv!r}")
    return list(argv)


def _abs_remote(what: str, remote: Any) -> str:
    remote = os.fspath(remote) if isinstance(remote, os.PathLike) else remote
    if not isinstance(remote, str) or not remote.startswith("/"):
        raise InvalidError(f"{what}: the remote path must be absolute, got {remote!r}")
    return remote


def _local(what: str, path: Any, kind: str) -> str:
    """The absolute local path (checked unless in a container)."""
    path = os.fspath(path) if isinstance(path, os.PathLike) else path
    if not isinstance(path, str) or not path:
        raise InvalidError(f"{what}: the local path must be a str or Path, got {path!r}")
    path = os.path.abspath(os.path.expanduser(path))
    if _in_container():
        return path
    ok = os.path.isdir(path) if kind == "dir" else os.path.isfile(path)
    if not ok:
        raise InvalidError(f"{what}: {path} is not a {'directory' if kind == 'dir' else 'file'}")
    return path


def _vars(what: str, vars: Any) -> dict[str, str]:
    if not isinstance(vars, Mapping):
        raise InvalidError(f"{what} takes a dict of str to str, got {type(vars).__name__}")
    out: dict[str, str] = {}
    for k, v in vars.items():
        if not isinstance(k, str) or not k or "=" in k or "\0" in k:
            raise InvalidError(f"{what}: {k!r} is not a variable name")
        if not isinstance(v, str):
            raise InvalidError(f"{what}: the value of {k!r} must be a str, got {type(v).__name__}")
        out[k] = v
    return out


class Image:
    """A container image spec.  Build it explicitly with ``hydrate()``, or let
    the first use build it; the resulting id is kept on the object."""

    def __init__(self, spec: dict[str, Any], mounts: Sequence[dict[str, Any]] = (),
                 staged: Sequence[tuple[str, str, Any]] = ()) -> None:
        # Users make images with the constructors (Image.debian_slim()).
        self._spec = dict(spec)
        if "steps" in self._spec:
            self._spec["steps"] = list(self._spec["steps"])
        self._mounts: list[dict[str, Any]] = [dict(m) for m in mounts]
        # (staging dir, local dir, Ignore): filtered copies made at build time.
        self._staged: list[tuple[str, str, Any]] = list(staged)
        self._image_id: Optional[str] = None
        self._lock = threading.Lock()

    # -- bases ------------------------------------------------------------------

    @staticmethod
    def debian_slim(python_version: Optional[str] = None) -> "Image":
        """Debian bookworm with python3 (the server says which versions it has;
        bookworm's is 3.11)."""
        if python_version is not None and not isinstance(python_version, str):
            raise InvalidError(
                f"python_version must be a str like \"3.11\", got {type(python_version).__name__}")
        return Image({"base": "debian_slim", "python_version": python_version})

    @staticmethod
    def from_scratch() -> "Image":
        """An empty file system (add files with ``add_local_*(copy=True)``)."""
        return Image({"base": "scratch"})

    @staticmethod
    def from_registry(tag: str, secret: Optional[Secret] = None, *,
                      setup_dockerfile_commands: Sequence[str] = (),
                      force_build: bool = False, add_python: Optional[str] = None) -> "Image":
        """An image from an OCI image layout directory or a ``docker save`` /
        OCI archive (``.tar``) on this machine.  Skiff's machines reach no
        registry, so a reference like ``python:3.12`` is refused with how to
        bring the image over instead."""
        if not isinstance(tag, str) or not tag:
            raise InvalidError(f"from_registry takes an image reference or a local path, got {tag!r}")
        if add_python is not None:
            raise InvalidError("from_registry(add_python=...) is not supported: the image "
                               "must bring its own python3 (or install it with run_commands)")
        path = os.path.abspath(os.path.expanduser(tag))
        if not _in_container() and not os.path.exists(path):
            raise InvalidError(
                f"from_registry({tag!r}): pulling from a registry needs network access that "
                "Skiff's machines lack.  On a machine that has it, save the image to a local "
                f"OCI layout or archive -- `docker save {tag} -o image.tar` or `skopeo copy "
                f"docker://{tag} oci:image-dir:latest` -- copy it here and pass its path")
        img = Image({"base": "oci", "path": path})
        if setup_dockerfile_commands:
            img = img._dockerfile_ops("\n".join(setup_dockerfile_commands), os.getcwd(), {},
                                      "setup_dockerfile_commands", with_from=False)
        return img._forced(force_build)

    @staticmethod
    def from_dockerfile(path: Union[str, "os.PathLike[str]"], *,
                        context_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
                        build_args: Optional[Mapping[str, str]] = None,
                        force_build: bool = False) -> "Image":
        """An image from a Dockerfile, read here into Skiff steps (see
        skiff._dockerfile for what it supports).  COPY reads files relative
        to ``context_dir`` (default: the Dockerfile's directory) and honours
        its ``.dockerignore``."""
        path = os.path.abspath(os.fspath(path))
        ctx = os.path.abspath(os.fspath(context_dir)) if context_dir is not None \
            else os.path.dirname(path)
        args = _vars("from_dockerfile(build_args=...)", build_args or {})
        if _in_container() and not os.path.isfile(path):
            return Image({"base": "scratch"})
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise InvalidError(f"from_dockerfile: cannot read {path}: {e.strerror}") from None
        img = Image({"base": "scratch"})._dockerfile_ops(text, ctx, args, os.path.basename(path))
        return img._forced(force_build)

    def _dockerfile_ops(self, text: str, ctx: str, args: dict[str, str], name: str,
                        with_from: bool = True) -> "Image":
        from . import _dockerfile as D

        parsed = D.parse(text, ctx, args, name, None if with_from else self._spec)
        img = Image(parsed.base or {}) if with_from else self
        dockerignore = _read_dockerignore(ctx)
        for op in parsed.ops:
            kind = op[0]
            if kind == "run":
                img = img._run_step(_label(op[1]), [op[2][0]], env=op[3])
            elif kind == "env":
                img = img.env(op[1])
            elif kind == "workdir":
                img = img.workdir(op[1])
            elif kind == "user":
                img = img._config_step({"op": "user", "user": op[1]}, f"USER {op[1]}", False)
            elif kind in ("entrypoint", "cmd"):
                img = img._config_step({"op": kind, "argv": op[1]},
                                       f"{kind.upper()} {shlex.join(op[1])}", False)
            elif kind == "copy":
                _, real, target, rel, label = op
                ig = _prefixed(dockerignore, rel) if dockerignore else None
                if ig is not None and os.path.isfile(real) and ig.ignored(""):
                    continue
                img = img._copy_step(real, target, ig, label, False)
        return img

    # -- run steps --------------------------------------------------------------

    def apt_install(self, *packages: Union[str, Sequence[str]], force_build: bool = False,
                    secrets: Optional[Sequence[Secret]] = None) -> "Image":
        """A new image: this one with Debian packages installed (``apt-get
        install``), as in Modal.  Takes names and lists of names."""
        names: list[str] = []
        for name in _strs("apt_install", packages):
            if len(name) > _APT_NAME_MAX or not _APT_NAME.fullmatch(name):
                raise InvalidError(
                    f"invalid Debian package name {name!r} in apt_install: names are "
                    f"2-{_APT_NAME_MAX} characters of a-z, 0-9, '+', '-' and '.', "
                    "starting with a letter or digit")
            names.append(name)
        if not names:
            return self
        joined = " ".join(names)
        return self._run_step(
            _label(f"apt_install {joined}"),
            ["apt-get update -q",
             f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
             f"{joined}"],
            env=merge_env(secrets, None), force=force_build)

    def pip_install(self, *packages: Union[str, Sequence[str]],
                    find_links: Optional[str] = None, index_url: Optional[str] = None,
                    extra_index_url: Optional[str] = None, pre: bool = False,
                    extra_options: str = "", force_build: bool = False,
                    secrets: Optional[Sequence[Secret]] = None) -> "Image":
        """A new image with Python packages installed by pip (into the
        system's python3; pip itself is installed first if missing)."""
        pkgs = sorted(_strs("pip_install", packages))
        for p in pkgs:
            if not p.strip() or p.startswith("-"):
                raise InvalidError(f"pip_install: {p!r} is not a requirement (pass pip options "
                                   "with extra_options=...)")
        if not pkgs:
            return self
        return self._pip_step(f"pip_install {' '.join(pkgs)}", [shlex.quote(p) for p in pkgs],
                              [], find_links, index_url, extra_index_url, pre, extra_options,
                              force_build, secrets)

    def pip_install_from_requirements(self, requirements_txt: str,
                                      find_links: Optional[str] = None, *,
                                      index_url: Optional[str] = None,
                                      extra_index_url: Optional[str] = None, pre: bool = False,
                                      extra_options: str = "", force_build: bool = False,
                                      secrets: Optional[Sequence[Secret]] = None) -> "Image":
        """A new image with the packages of a local requirements file (the
        file alone is mounted into the build; ``-r other.txt`` lines inside
        it are not followed)."""
        local = _local("pip_install_from_requirements", requirements_txt, "file")
        target = "/skiff/build/requirements.txt"
        return self._pip_step(f"pip_install_from_requirements {os.path.basename(local)}",
                              ["-r", target], [(local, target)], find_links, index_url,
                              extra_index_url, pre, extra_options, force_build, secrets)

    def _pip_step(self, label: str, args: list[str], mounts: list[tuple[str, str]],
                  find_links: Optional[str], index_url: Optional[str],
                  extra_index_url: Optional[str], pre: bool, extra_options: str,
                  force: bool, secrets: Optional[Sequence[Secret]]) -> "Image":
        opts: list[str] = []
        if find_links is not None:
            if not isinstance(find_links, str) or not find_links:
                raise InvalidError(f"find_links must be a URL or a local directory, got {find_links!r}")
            if re.match(r"^[a-z][a-z0-9+.-]*://", find_links):
                opts += ["--find-links", find_links]
            else:
                local = _local("pip_install(find_links=...)", find_links, "dir")
                mounts = [(local, "/skiff/build/m0")] + mounts
                opts += ["--find-links", "/skiff/build/m0"]
        for flag, val in (("--index-url", index_url), ("--extra-index-url", extra_index_url)):
            if val is not None:
                if not isinstance(val, str) or not val:
                    raise InvalidError(f"pip_install: {flag[2:].replace('-', '_')} must be a "
                                       f"URL (str), got {val!r}")
                opts += [flag, val]
        if pre:
            opts.append("--pre")
        if not isinstance(extra_options, str):
            raise InvalidError(f"extra_options must be a str, got {type(extra_options).__name__}")
        try:
            opts += shlex.split(extra_options)
        except ValueError as e:
            raise InvalidError(f"extra_options {extra_options!r}: {e}") from None
        cmd = " ".join([_PIP] + [shlex.quote(o) for o in opts] + args)
        return self._run_step(_label(label), [_ENSURE_PIP, cmd], env=merge_env(secrets, None),
                              mounts=mounts, force=force)

    def run_commands(self, *commands: Union[str, Sequence[str]],
                     env: Optional[Mapping[str, Optional[str]]] = None,
                     secrets: Optional[Sequence[Secret]] = None,
                     force_build: bool = False) -> "Image":
        """A new image: shell commands run in order (``/bin/sh -c``) in a
        build container of this image; the first that fails fails the build."""
        cmds = _strs("run_commands", commands)
        if not cmds:
            return self
        return self._run_step(_label("run_commands " + " && ".join(cmds)), cmds,
                              env=merge_env(secrets, env, "run_commands(env=...)"),
                              force=force_build)

    def run_function(self, raw_f: Callable[..., Any],
                     secrets: Optional[Sequence[Secret]] = None, *,
                     args: Sequence[Any] = (), kwargs: Optional[Mapping[str, Any]] = None,
                     force_build: bool = False) -> "Image":
        """A new image: ``raw_f(*args, **kwargs)`` run once in a build
        container of this image (to download a model, warm a cache...), what
        it writes kept.  ``raw_f`` must be defined at module level in a file;
        the step is rebuilt when the function's source, its module file or
        the arguments change."""
        from ._register import extra_dirs, locate, sdk_dir

        raw = raw_f.get_raw_f() if hasattr(raw_f, "get_raw_f") else raw_f
        if not callable(raw):
            raise InvalidError(f"run_function takes a function, got {type(raw_f).__name__}")
        where = locate(raw)
        name = getattr(raw, "__qualname__", repr(raw))
        if where is None or "<locals>" in name:
            raise InvalidError(f"run_function({name}): the function must be defined at module "
                               "level in a file, so that the build container can import it")
        payload, pickled = run_function_payload(
            where["module"], "/skiff/app/" + os.path.relpath(where["file"], where["mount_dir"]),
            where["qualname"], tuple(args), dict(kwargs or {}))
        if len(payload) > _ARG_MAX:
            raise InvalidError(f"run_function({name}): the arguments are too large "
                               f"({len(payload)} bytes once encoded; at most {_ARG_MAX})")
        h = hashlib.sha256()
        for part in (_source_of(raw), _read(where["file"]), pickled):
            h.update(hashlib.sha256(part).digest())
        mounts = [{"source": sdk_dir(), "target": "/skiff/sdk"},
                  {"source": where["mount_dir"], "target": "/skiff/app"}]
        mounts += [{"source": d, "target": f"/skiff/extra/{os.path.basename(d)}"}
                   for d in extra_dirs()]
        env = merge_env(secrets, None)
        env.update({"PYTHONPATH": "/skiff/sdk:/skiff/app:/skiff/extra", "SKIFF_BUILD_STEP": "1"})
        step = self._step_json("run", f"run_function {name}", force_build)
        step.update({"commands": [f"python3 -m skiff._build_fn {payload}"], "env": env,
                     "mounts": mounts, "content_hash": h.hexdigest()})
        return self._with(step)

    def _run_step(self, label: str, commands: list[str], env: Optional[dict[str, str]] = None,
                  mounts: Sequence[tuple[str, str]] = (), force: bool = False) -> "Image":
        step = self._step_json("run", label, force)
        step.update({"commands": list(commands), "env": dict(env or {}),
                     "mounts": [{"source": s, "target": t} for s, t in mounts],
                     "content_hash": None})
        if mounts and not _in_container():
            step["content_hash"] = F.hash_many([s for s, _ in mounts])
        return self._with(step)

    # -- config steps -----------------------------------------------------------

    def env(self, vars: Mapping[str, str], force_build: bool = False) -> "Image":
        """A new image with environment variables set (for later build steps
        and for every container of the image)."""
        v = _vars("env", vars)
        if not v:
            return self
        return self._config_step({"op": "env", "vars": v},
                                 "env " + " ".join(f"{k}={x}" for k, x in v.items()), force_build)

    def workdir(self, path: Union[str, "os.PathLike[str]"], force_build: bool = False) -> "Image":
        """A new image whose working directory is ``path`` (relative paths
        are taken from the current one)."""
        p = os.fspath(path) if isinstance(path, os.PathLike) else path
        if not isinstance(p, str) or not p:
            raise InvalidError(f"workdir takes a path, got {path!r}")
        p = posixpath.normpath(posixpath.join(self._config("workdir") or "/", p))
        return self._config_step({"op": "workdir", "path": p}, f"workdir {p}", force_build)

    def entrypoint(self, entrypoint_commands: Sequence[str], force_build: bool = False) -> "Image":
        """A new image with this ENTRYPOINT (used by sandboxes' default command)."""
        argv = _argv("entrypoint", entrypoint_commands)
        return self._config_step({"op": "entrypoint", "argv": argv},
                                 f"entrypoint {shlex.join(argv)}", force_build)

    def cmd(self, cmd: Sequence[str], force_build: bool = False) -> "Image":
        """A new image with this CMD."""
        argv = _argv("cmd", cmd)
        return self._config_step({"op": "cmd", "argv": argv}, f"cmd {shlex.join(argv)}",
                                 force_build)

    def _config_step(self, fields: dict[str, Any], label: str, force: bool) -> "Image":
        step = self._step_json(str(fields["op"]), _label(label), force)
        step.update(fields)
        return self._with(step)

    def _config(self, key: str) -> Any:
        """The last value a config step of this spec set (None if none did)."""
        val = None
        for st in self._spec.get("steps", []):
            if st["op"] == key == "workdir":
                val = st["path"]
            elif st["op"] == "env" and key in st["vars"]:
                val = st["vars"][key]
        return val

    # -- local files --------------------------------------------------------------

    def add_local_file(self, local_path: Union[str, "os.PathLike[str]"],
                       remote_path: Union[str, "os.PathLike[str]"], *, copy: bool = False,
                       force_build: bool = False) -> "Image":
        """A local file at ``remote_path`` (a path ending in ``/`` is a
        directory to put it in).  ``copy=False`` mounts it into containers of
        the image; ``copy=True`` copies it into a layer."""
        local = _local("add_local_file", local_path, "file")
        remote = _abs_remote("add_local_file", remote_path)
        if remote.endswith("/"):
            remote += os.path.basename(local)
        remote = posixpath.normpath(remote)
        if not copy:
            return self._with_mount(local, remote)
        return self._copy_step(local, remote, None, f"add_local_file {local_path} {remote}",
                               force_build)

    def add_local_dir(self, local_path: Union[str, "os.PathLike[str]"],
                      remote_path: Union[str, "os.PathLike[str]"], *, copy: bool = False,
                      ignore: F.IgnoreSpec = (), force_build: bool = False) -> "Image":
        """A local directory's contents at ``remote_path``.  ``ignore`` takes
        glob patterns (``.dockerignore`` style, as Modal's) or a callable on
        relative Paths; it applies to ``copy=True`` only -- ``copy=False``
        mounts the whole directory."""
        local = _local("add_local_dir", local_path, "dir")
        remote = posixpath.normpath(_abs_remote("add_local_dir", remote_path))
        ig = F.Ignore(ignore or None, "add_local_dir(ignore=...)")
        if not copy:
            if ig:
                _warn_once("add_local_dir(copy=False) mounts the whole directory; ignore=... "
                           "applies to copy=True only")
            return self._with_mount(local, remote)
        return self._copy_step(local, remote, ig, f"add_local_dir {local_path} {remote}",
                               force_build)

    def add_local_python_source(self, *modules: str, copy: bool = False,
                                ignore: Optional[F.IgnoreSpec] = None,
                                force_build: bool = False) -> "Image":
        """Local Python modules or packages (found as ``import`` would, but
        not imported) at ``/root/<name>``, with ``/root`` on the containers'
        Python path."""
        img = self
        for name in modules:
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_]\w*", name):
                raise InvalidError(f"add_local_python_source takes top-level module names, "
                                   f"got {name!r}")
            local = None if _in_container() else _module_path(name)
            if local is None:
                continue
            remote = f"/root/{name}" if os.path.isdir(local) else f"/root/{os.path.basename(local)}"
            if not copy:
                img = img._with_mount(local, remote)
                continue
            ig = F.Ignore(_PY_SOURCE_IGNORE if ignore is None else ignore,
                          "add_local_python_source(ignore=...)")
            img = img._copy_step(local, remote, ig if os.path.isdir(local) else None,
                                 f"add_local_python_source {name}", force_build)
        if copy and modules:
            path = img._config("PYTHONPATH")
            if not path or "/root" not in path.split(":"):
                img = img.env({"PYTHONPATH": f"{path}:/root" if path else "/root"})
        return img

    def _copy_step(self, local: str, remote: str, ignore: Optional[F.Ignore], label: str,
                   force: bool) -> "Image":
        step = self._step_json("copy", _label(label), force)
        staged = list(self._staged)
        source, digest = local, None
        if not _in_container():
            digest = F.content_hash(local, ignore)
            if ignore and os.path.isdir(local) and F.ignores_something(local, ignore):
                source = F.staging_dir(digest)
                staged.append((source, local, ignore))
        step.update({"source": source, "target": remote, "content_hash": digest})
        return self._with(step, staged)

    def _with_mount(self, local: str, remote: str) -> "Image":
        img = Image(self._spec, self._mounts + [{"source": local, "target": remote,
                                                 "readonly": True}], self._staged)
        return img

    # -- plumbing -----------------------------------------------------------------

    def _step_json(self, op: str, label: str, force: bool) -> dict[str, Any]:
        if not isinstance(force, bool):
            raise InvalidError(f"force_build must be a bool, got {force!r}")
        if op in ("run", "copy") and self._mounts:
            raise InvalidError(
                f"a build step ({label}) after add_local_*(copy=False): those files are "
                "mounted into containers, not present during builds.  Add them last, or "
                "use copy=True")
        return {"op": op, "label": label, "force": force}

    def _with(self, step: dict[str, Any],
              staged: Optional[list[tuple[str, str, Any]]] = None) -> "Image":
        spec = dict(self._spec)
        spec["steps"] = list(spec.get("steps", [])) + [step]
        return Image(spec, self._mounts, self._staged if staged is None else staged)

    def _forced(self, force: bool) -> "Image":
        if not force:
            return self
        steps = self._spec.get("steps") or []
        if not steps:
            return self  # a base alone: the server has it or builds it once
        spec = dict(self._spec)
        spec["steps"] = [dict(steps[0], force=True)] + list(steps[1:])
        return Image(spec, self._mounts, self._staged)

    @property
    def object_id(self) -> Optional[str]:
        """The image id (``im-...``) once built, else None."""
        return self._image_id

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._spec.items()
                         if k not in ("base", "steps") and v is not None)
        steps = len(self._spec.get("steps", []))
        more = f" +{steps} steps" if steps else ""
        built = f" {self._image_id}" if self._image_id else ""
        return f"<Image {self._spec.get('base')}({args}){more}{built}>"

    def hydrate(self, client: Optional[_client.Client] = None) -> "Image":
        """Builds the image on the server (or finds it cached) and returns self."""
        self._build(client or _client.get_client())
        return self

    def _build(self, client: _client.Client, out: Optional[TextIO] = None,
               plain: Optional[bool] = None) -> str:
        with self._lock:
            if self._image_id is None:
                made = []
                try:
                    for dest, local, ig in self._staged:
                        F.stage(local, ig, dest)
                        made.append(dest)
                    self._image_id = build_spec(client, self._spec, out or sys.stderr, plain)
                finally:
                    for dest in made:
                        shutil.rmtree(dest, ignore_errors=True)
            return self._image_id

    def _container_mounts(self) -> list[dict[str, Any]]:
        """The ``mounts`` of a function or sandbox of this image."""
        return [dict(m) for m in self._mounts]

    def _sandbox_env(self, env: dict[str, str]) -> dict[str, str]:
        """A sandbox's env: ``/root`` added to PYTHONPATH when modules are
        mounted there (function containers put /root on sys.path themselves)."""
        if not any(m["target"].startswith("/root/") for m in self._mounts):
            return env
        base = env.get("PYTHONPATH") or self._config("PYTHONPATH")
        if base and "/root" in base.split(":"):
            return env
        return {**env, "PYTHONPATH": f"{base}:/root" if base else "/root"}


def run_function_payload(module: str, file: str, qualname: str, args: tuple[Any, ...],
                         kwargs: dict[str, Any]) -> tuple[str, bytes]:
    """(the argument of ``python3 -m skiff._build_fn``, the pickled arguments)."""
    from . import _payload as P

    try:
        pickled = P.dumps((args, kwargs))
    except Exception as e:
        raise InvalidError(f"run_function: the arguments cannot be pickled: "
                           f"{type(e).__name__}: {e}") from None
    doc = {"module": module, "file": file, "qualname": qualname,
           "args": base64.b64encode(pickled).decode("ascii")}
    return base64.b64encode(json.dumps(doc).encode()).decode("ascii"), pickled


def _source_of(f: Any) -> bytes:
    try:
        return inspect.getsource(f).encode()
    except (OSError, TypeError):
        return repr(getattr(f, "__code__", f)).encode()


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _module_path(name: str) -> str:
    """A top-level module's file, or its package's directory (not imported)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as e:
        raise InvalidError(f"add_local_python_source: cannot find module {name!r}: {e}") from None
    if spec is None:
        raise InvalidError(f"add_local_python_source: no module named {name!r} on this "
                           "machine's Python path")
    locs = list(spec.submodule_search_locations or [])
    if locs:
        if len(locs) != 1:
            raise InvalidError(f"add_local_python_source: {name!r} is a namespace package "
                               f"spread over {locs}; add its directories with add_local_dir")
        return os.path.abspath(locs[0])
    if not spec.origin or not os.path.isfile(spec.origin):
        raise InvalidError(f"add_local_python_source: {name!r} is built into Python, "
                           "not a local file")
    return os.path.abspath(spec.origin)


def _read_dockerignore(ctx: str) -> Optional[F.Ignore]:
    path = os.path.join(ctx, ".dockerignore")
    try:
        with open(path, encoding="utf-8") as f:
            pats = [ln for ln in f.read().splitlines() if ln.strip()]
    except OSError:
        return None
    ig = F.Ignore(pats, ".dockerignore")
    return ig if ig else None


def _prefixed(ig: F.Ignore, rel: str) -> F.Ignore:
    """``ig`` (relative to the build context) asked about paths relative to
    ``rel``, a file or directory in the context."""
    def fn(p: Any) -> bool:
        s = str(p)
        full = rel if s in ("", ".") else (f"{rel}/{s}" if rel else s)
        return bool(full) and ig.ignored(full)
    return F.Ignore(fn)


_warned: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        print(f"skiff: warning: {msg}", file=sys.stderr)
