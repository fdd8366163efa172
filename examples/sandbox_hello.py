"""Runs a command in a Debian sandbox and prints what it printed.

    python3 examples/sandbox_hello.py

Needs the Skiff SDK importable (`make install`, or PYTHONPATH=sdk/python) and
a server: one is started in the background if none answers.
"""

import os
import sys

try:
    import skiff
except ImportError:  # run from a checkout without `make install`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sdk", "python"))
    import skiff


def main() -> None:
    sb = skiff.Sandbox.create(
        "sh", "-c", 'echo "hello from $(hostname)"; echo "Debian $(cat /etc/debian_version)"',
        image=skiff.Image.debian_slim(),
        timeout=60,
    )
    sb.wait()
    print(sb.stdout.read(), end="")
    err = sb.stderr.read()
    if err:
        print(err, end="", file=sys.stderr)
    print(f"(sandbox {sb.object_id} exited with {sb.returncode})")


if __name__ == "__main__":
    main()
