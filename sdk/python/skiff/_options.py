"""The options of ``@app.function(...)``, ``@app.cls(...)`` and
``Cls.with_options(...)``, checked and turned into a FunctionSpec.

Modal's parameters that Skiff does not have yet are refused by name when
given a value (passing their default is fine), so a Modal program either
runs as written or says what it is missing.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Optional, Union

from .exception import InvalidError
from .functions import FunctionSpec, check_autoscaler
from .image import Image
from .retries import Retries, normalize as normalize_retries
from .secret import Secret

# Keyword arguments of Modal's @app.function / @app.cls that Skiff does not
# have yet.  Passing one with its default (None, False, 0, empty) is fine;
# any other value is an error that names it.
MODAL_FUNCTION_PARAMS = frozenset({
    "network_file_systems", "volumes", "ephemeral_disk", "proxy",
    "cloud", "region", "nonpreemptible", "restrict_modal_access",
    "single_use_containers", "max_inputs", "i6pn", "include_source", "experimental_options",
    "keep_warm", "concurrency_limit", "container_idle_timeout", "allow_concurrent_inputs",
    "mounts", "secret", "allow_cross_region_volumes", "checkpointing_enabled", "rdma",
    "cloud_bucket_mounts", "_experimental_scheduler_placement", "_experimental_proxy_ip",
    "_experimental_custom_scaling_factor", "_experimental_restrict_output",
    "_experimental_buffer_containers", "_experimental_gpus", "_experimental_enable_gpu_snapshot",
})

# Modal 0.x names of autoscaler settings, and what Modal 1.0 calls them.
RENAMED = {
    "keep_warm": "min_containers",
    "concurrency_limit": "max_containers",
    "container_idle_timeout": "scaledown_window",
    "allow_concurrent_inputs": "@skiff.concurrent(max_inputs=...)",
}

# A GPU request as Modal writes it: "any", "T4", "A100-80GB", "H100:2".
_GPU_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(:[1-9][0-9]?)?$")


def _is_unset(value: Any) -> bool:
    if value is None or value is False or (isinstance(value, (int, float)) and value == 0):
        return True
    try:
        return len(value) == 0
    except TypeError:
        return False


def check_unsupported(what: str, known: frozenset[str], kwargs: Mapping[str, Any]) -> None:
    for key, value in kwargs.items():
        if key not in known:
            raise InvalidError(f"{what} got an unexpected keyword argument {key!r}")
        if not _is_unset(value):
            if key in RENAMED:
                raise InvalidError(f"{what}: {key}= is Modal's old name; use {RENAMED[key]}")
            raise InvalidError(f"{what}: the parameter {key}= is not available in Skiff yet")


def check_number(what: str, value: Any, kind: type, positive: bool = True) -> None:
    if isinstance(value, tuple):
        raise InvalidError(f"{what}=(request, limit) is not supported yet; pass one number")
    ok = int if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok):
        raise InvalidError(f"{what} must be {'an int' if kind is int else 'a number'}, "
                           f"got {value!r}")
    if positive and value <= 0:
        raise InvalidError(f"{what} must be > 0, got {value!r}")


def check_gpu(gpu: Any) -> Optional[str]:
    """A GPU request (Modal's strings), or None for none."""
    if gpu is None:
        return None
    if isinstance(gpu, (list, tuple)):
        raise InvalidError("gpu=[...] (a list of fallbacks) is not supported yet; pass one "
                           "string such as 'H100' or 'A100-80GB:2'")
    if not isinstance(gpu, str) or not _GPU_RE.match(gpu):
        raise InvalidError(f"gpu must be a string such as 'any', 'T4', 'H100:2', got {gpu!r}")
    return gpu


def _secret_list(secrets: Any) -> list[Secret]:
    if isinstance(secrets, Secret) or not isinstance(secrets, Iterable):
        raise InvalidError("secrets must be a list of skiff.Secret")
    out = list(secrets)
    for s in out:
        if not isinstance(s, Secret):
            raise InvalidError(f"secrets must be skiff.Secret objects, got {type(s).__name__}")
    return out


def function_spec(*, image: Optional[Image] = None, secrets: Iterable[Secret] = (),
                  env: Optional[Mapping[str, Optional[str]]] = None,
                  cpu: Optional[float] = None, memory: Optional[int] = None,
                  gpu: Optional[str] = None, timeout: int = 300,
                  startup_timeout: Optional[int] = None,
                  retries: Union[None, int, Retries] = None, block_network: bool = False,
                  serialized: bool = False, min_containers: Optional[int] = None,
                  max_containers: Optional[int] = None, buffer_containers: Optional[int] = None,
                  scaledown_window: Optional[int] = None,
                  enable_memory_snapshot: bool = False) -> FunctionSpec:
    """The FunctionSpec of these options (InvalidError naming a bad one)."""
    if image is not None and not isinstance(image, Image):
        raise InvalidError(f"image must be a skiff.Image, got {type(image).__name__}")
    secret_list = _secret_list(secrets)
    if env is not None and not isinstance(env, Mapping):
        raise InvalidError(f"env must be a dict of str to str, got {type(env).__name__}")
    if cpu is not None:
        check_number("cpu", cpu, float)
    if memory is not None:
        check_number("memory", memory, int)
    check_number("timeout", timeout, int)
    if timeout > 86400:
        raise InvalidError(f"timeout must be at most 86400 seconds (24 h), got {timeout}")
    if startup_timeout is not None:
        check_number("startup_timeout", startup_timeout, int)
    if max_containers is not None:
        check_number("max_containers", max_containers, int)
    check_autoscaler(min_containers, max_containers, buffer_containers, scaledown_window)
    return FunctionSpec(
        image=image, secrets=secret_list, env=dict(env) if env is not None else None,
        cpu=float(cpu) if cpu is not None else None, memory=memory, gpu=check_gpu(gpu),
        timeout=timeout, startup_timeout=startup_timeout, retries=normalize_retries(retries),
        block_network=bool(block_network), serialized=bool(serialized),
        min_containers=min_containers or 0, max_containers=max_containers,
        buffer_containers=buffer_containers or 0,
        scaledown_window=60 if scaledown_window is None else scaledown_window,
        enable_memory_snapshot=bool(enable_memory_snapshot))


def with_overrides(spec: FunctionSpec, **options: Any) -> FunctionSpec:
    """``spec`` with the options given (not None) replaced, checked as
    ``function_spec`` checks them (``Cls.with_options``)."""
    given = {k: v for k, v in options.items() if v is not None}
    if not given:
        return spec
    merged = {
        "image": spec.image, "secrets": spec.secrets, "env": spec.env, "cpu": spec.cpu,
        "memory": spec.memory, "gpu": spec.gpu, "timeout": spec.timeout,
        "startup_timeout": spec.startup_timeout, "retries": spec.retries,
        "block_network": spec.block_network, "serialized": spec.serialized,
        "min_containers": spec.min_containers, "max_containers": spec.max_containers,
        "buffer_containers": spec.buffer_containers, "scaledown_window": spec.scaledown_window,
        "enable_memory_snapshot": spec.enable_memory_snapshot,
    }
    if "secrets" in given:
        given["secrets"] = list(spec.secrets) + _secret_list(given["secrets"])
    if "env" in given and spec.env:
        given["env"] = {**spec.env, **dict(given["env"])}
    merged.update(given)
    checked = function_spec(**merged)
    return spec.replace(**{k: getattr(checked, k) for k in merged})


def apply_partial(spec: FunctionSpec, marks: Mapping[str, Any], what: str) -> FunctionSpec:
    """``spec`` with what @concurrent / @batched said (marks of
    skiff.partial_function)."""
    conc, batch = marks.get("concurrent"), marks.get("batched")
    if conc and batch:
        raise InvalidError(f"{what}: @skiff.concurrent and @skiff.batched do not go together")
    if conc:
        return spec.replace(max_inputs=conc["max_inputs"], target_inputs=conc["target_inputs"])
    if batch:
        # The container holds up to max_batch_size chunks to fill a batch
        # (docs/protocol.md); the server leases at most max_inputs to it.
        return spec.replace(batch=dict(batch), max_inputs=batch["max_batch_size"],
                            target_inputs=None)
    return spec
