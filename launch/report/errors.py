"""The report's error (raised before any output is written where it can be)."""

from datamodules.configkit import ClassregError


class ReportError(ClassregError, ValueError):
    """The runs cannot be reported on; the message names the file or option and the fix."""
