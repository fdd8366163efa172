"""``python3 -m skiff._build_fn PAYLOAD``: the command of an
``Image.run_function`` build step.

PAYLOAD is base64 of JSON ``{"module", "file", "qualname", "args"}`` (args:
base64 of the pickled ``(args, kwargs)``).  The user's module is imported the
way a function container imports it (skiff._container's helpers, with the
module's folder mounted at /skiff/app) and the function is called once; a
coroutine is run to completion.  Exit status 0 on success; on failure the
traceback goes to stderr (the server shows the build output's last lines)
and the status is 1.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import sys
from typing import Any


def _call(doc: dict[str, Any]) -> None:
    from skiff import _container as C

    mod = C._import_module(str(doc["module"]), doc.get("file"))
    f = C._unwrap(C._resolve(mod, str(doc["qualname"])))
    args, kwargs = pickle.loads(base64.b64decode(doc["args"]))
    result = f(*args, **kwargs)
    if hasattr(result, "__await__"):
        import asyncio

        async def wait() -> Any:
            return await result
        asyncio.run(wait())


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python3 -m skiff._build_fn PAYLOAD", file=sys.stderr)
        return 2
    os.environ.setdefault("SKIFF_BUILD_STEP", "1")
    try:
        doc = json.loads(base64.b64decode(argv[1]))
        _call(doc)
    except SystemExit as e:
        if e.code in (None, 0):
            return 0
        print(f"run_function: the function called sys.exit({e.code!r})", file=sys.stderr)
        return e.code if isinstance(e.code, int) else 1
    except BaseException as e:  # noqa: BLE001 - reported, then a failed step
        from skiff import _container as C

        sys.stderr.write(C._format_exc(e))
        sys.stderr.flush()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
