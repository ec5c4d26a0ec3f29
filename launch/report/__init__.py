"""Class-dependence report over a sweep: ``build_report(paths, out_dir) -> Report``."""

from launch.report.errors import ReportError

__all__ = ["Report", "ReportError", "ReportOptions", "build_report"]


def __getattr__(name):  # the report's modules import pandas and matplotlib: only when used
    if name in ("Report", "ReportOptions", "build_report"):
        from launch.report import build

        return getattr(build, name)
    raise AttributeError(name)
