"""The one base class of the errors a user can fix, and the did-you-mean hint they share."""

from __future__ import annotations

import difflib
from typing import Iterable


class ClassregError(Exception):
    """Bad input or state the user can fix; the message names the thing and the fix.

    The command line prints it as one line (``classreg <command>: error: ...``) and exits with 2.
    """


class ConfigError(ClassregError, ValueError):
    """A config key or value is wrong; the message names it and the fix."""


def did_you_mean(word: object, candidates: Iterable[object], prefix: str = "") -> str:
    """`` Did you mean '<prefix>x'?`` for the closest candidate x, or ``""`` when none is close."""
    near = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" Did you mean '{prefix}{near[0]}'?" if near else ""
