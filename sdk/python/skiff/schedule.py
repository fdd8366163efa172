"""Schedules of deployed functions, as Modal writes them:

    @app.function(schedule=skiff.Period(hours=6))
    def refresh(): ...

    @app.function(schedule=skiff.Cron("0 9 * * MON-FRI", timezone="Europe/Paris"))
    def report(): ...

A schedule runs the function with no arguments, also while it is scaled to
zero, for as long as its app is deployed (``skiff deploy``); an ephemeral
app (``skiff run``) ignores schedules, as Modal's do.  A ``Period`` runs
every period from the deploy (a redeploy resets it, as in Modal); a ``Cron``
at each matching minute of wall-clock time in its time zone (UTC by
default), undisturbed by deploys -- the server's cron engine (docs/api.md,
"Schedules") checks the expression at deploy.  A run missed while the
server was down fires once when it is back, not once per missed slot.
"""

from __future__ import annotations

from typing import Any, Optional

from .exception import InvalidError


class Schedule:
    """The base of Period and Cron."""

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError


class Period(Schedule):
    """Runs every fixed stretch of time: ``Period(days=1)``, ``Period(minutes=30)``.
    Months and years, whose length varies, are a Cron's job."""

    def __init__(self, *, years: int = 0, months: int = 0, weeks: float = 0, days: float = 0,
                 hours: float = 0, minutes: float = 0, seconds: float = 0) -> None:
        if years or months:
            raise InvalidError("Period(years=, months=) is not supported: their length varies; "
                               "use skiff.Cron (for example Cron('0 0 1 * *') for monthly)")
        for name, v in (("weeks", weeks), ("days", days), ("hours", hours),
                        ("minutes", minutes), ("seconds", seconds)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise InvalidError(f"Period({name}=) must be a number >= 0, got {v!r}")
        self.seconds = float(weeks * 604800 + days * 86400 + hours * 3600 + minutes * 60 +
                             seconds)
        if self.seconds < 1:
            raise InvalidError(f"a Period must be at least 1 second, got {self.seconds:g} s")

    def to_json(self) -> dict[str, Any]:
        return {"period": self.seconds}

    def __repr__(self) -> str:
        return f"Period(seconds={self.seconds:g})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Period) and other.seconds == self.seconds

    def __hash__(self) -> int:
        return hash(("period", self.seconds))


class Cron(Schedule):
    """Runs at the minutes a standard five-field cron expression names
    (``"m h dom mon dow"``: ranges, steps, lists, ``MON``/``JAN`` names,
    ``@hourly``-style aliases), in ``timezone`` (an IANA name such as
    ``"America/New_York"``; UTC by default)."""

    def __init__(self, cron_string: str, timezone: Optional[str] = "UTC") -> None:
        if not isinstance(cron_string, str) or not cron_string.strip():
            raise InvalidError(f"Cron needs an expression such as '0 9 * * *', got "
                               f"{cron_string!r}")
        if timezone is not None and not isinstance(timezone, str):
            raise InvalidError(f"Cron(timezone=) must be a time zone name such as "
                               f"'Europe/Paris', got {timezone!r}")
        fields = cron_string.split()
        if not cron_string.strip().startswith("@") and len(fields) != 5:
            raise InvalidError(f"a cron expression has 5 fields (minute hour day-of-month "
                               f"month day-of-week), got {len(fields)} in {cron_string!r}")
        self.cron_string = " ".join(fields)
        self.timezone = timezone or "UTC"

    def to_json(self) -> dict[str, Any]:
        return {"cron": self.cron_string, "timezone": self.timezone}

    def __repr__(self) -> str:
        return f"Cron({self.cron_string!r}, timezone={self.timezone!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Cron) and other.cron_string == self.cron_string and
                other.timezone == self.timezone)

    def __hash__(self) -> int:
        return hash(("cron", self.cron_string, self.timezone))
