"""The config machinery every layer shares: typed fields, validation, loading, errors, atomic files.

This package imports nothing of the project (an import-linter contract in setup.cfg checks it), so that
``datamodules``, ``lightning_modules`` and ``launch`` can all declare their config sections with it.
"""

from datamodules.configkit.errors import ClassregError, ConfigError, did_you_mean
from datamodules.configkit.fields import bounded, choice, field_facts, setting
from datamodules.configkit.files import atomic_write, atomic_write_text, dump_yaml, save_yaml
from datamodules.configkit.loading import load_config, merge, overrides_config, parse_overrides, read_yaml_file, typed
from datamodules.configkit.untrusted import check_yaml, refuse_interpolation
from datamodules.configkit.validation import validate

__all__ = [
    "ClassregError",
    "ConfigError",
    "did_you_mean",
    "bounded",
    "choice",
    "field_facts",
    "setting",
    "atomic_write",
    "atomic_write_text",
    "dump_yaml",
    "save_yaml",
    "load_config",
    "merge",
    "overrides_config",
    "parse_overrides",
    "read_yaml_file",
    "check_yaml",
    "refuse_interpolation",
    "typed",
    "validate",
]
