class ReportError(ValueError):
    """The runs cannot be reported on; the message names the file or option and the fix."""
