"""The SDK side of deployed apps without a server: Period/Cron checks and
their JSON, `skiff deploy`'s command line, and the code snapshot (which
files of the app's directory go with a deploy)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import textwrap

import pytest

import skiff
from skiff import _deploy
from skiff.exception import InvalidError


def test_period_json_and_checks() -> None:
    assert skiff.Period(seconds=2).to_json() == {"period": 2.0}
    assert skiff.Period(days=1, hours=2, minutes=3, seconds=4).to_json() == {
        "period": 86400 + 7200 + 180 + 4.0}
    assert skiff.Period(weeks=1) == skiff.Period(days=7)
    with pytest.raises(InvalidError, match="at least 1 second"):
        skiff.Period(seconds=0.5)
    with pytest.raises(InvalidError, match="months="):
        skiff.Period(months=1)
    with pytest.raises(InvalidError, match="hours="):
        skiff.Period(hours=-1)


def test_cron_json_and_checks() -> None:
    c = skiff.Cron("0  3 * *\t*", timezone="Europe/Paris")
    assert c.to_json() == {"cron": "0 3 * * *", "timezone": "Europe/Paris"}
    assert skiff.Cron("@hourly").to_json() == {"cron": "@hourly", "timezone": "UTC"}
    with pytest.raises(InvalidError, match="5 fields"):
        skiff.Cron("0 3 * *")
    with pytest.raises(InvalidError, match="time zone name"):
        skiff.Cron("0 3 * * *", timezone=5)  # type: ignore[arg-type]


def test_schedule_goes_into_the_registration() -> None:
    app = skiff.App("s")

    @app.function(schedule=skiff.Period(minutes=5), serialized=True)
    def job() -> None:
        pass

    assert job.spec.schedule == skiff.Period(minutes=5)
    def other() -> None:
        pass

    with pytest.raises(InvalidError, match="Period or skiff.Cron"):
        app.function(schedule="0 * * * *", serialized=True)(other)


def test_split_argv() -> None:
    opts, ref = _deploy.split_argv(["--name", "x", "--tag=t1", "--strategy", "recreate",
                                    "app.py::a"])
    assert ref == "app.py::a"
    assert (opts["name"], opts["tag"], opts["strategy"]) == ("x", "t1", "recreate")
    with pytest.raises(_deploy.UsageError, match="rolling or recreate"):
        _deploy.split_argv(["--strategy", "blue-green", "a.py"])
    with pytest.raises(_deploy.UsageError, match="which file"):
        _deploy.split_argv([])
    with pytest.raises(_deploy.UsageError, match="needs a value"):
        _deploy.split_argv(["a.py", "--name"])


def test_code_snapshot_takes_what_the_app_imported(tmp_path: "os.PathLike[str]") -> None:
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "pkg", "sub"))
    files = {
        "app.py": "import helper\nimport pkg.sub.mod\n",
        "helper.py": "X = 1\n",
        "unused.py": "raise SystemExit('never imported')\n",
        "data.bin": "not code",
        "pkg/__init__.py": "",
        "pkg/sub/__init__.py": "",
        "pkg/sub/mod.py": "Y = 2\n",
    }
    for rel, text in files.items():
        with open(os.path.join(root, rel), "w") as f:
            f.write(text)
    code = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {root!r})
        import app
        from skiff._deploy import code_snapshot
        print(json.dumps(code_snapshot({root!r})))
    """)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(skiff.__file__)))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    import json
    snap = json.loads(r.stdout)
    assert sorted(snap) == ["app.py", "helper.py", "pkg/__init__.py", "pkg/sub/__init__.py",
                            "pkg/sub/mod.py"]
    assert base64.b64decode(snap["helper.py"]) == b"X = 1\n"
