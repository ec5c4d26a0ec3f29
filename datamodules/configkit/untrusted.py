"""What a config written by someone else may hold: plain YAML values, nothing that builds objects or reads
the environment.

Presets, sweep specs, transfer configs, saved run configs and ``key=value`` overrides all pass here before
OmegaConf sees them: an explicit YAML tag (``!!python/object``, ``!!binary``, ``!custom``) is refused, the
document must be a mapping, and no value may hold ``${...}``, OmegaConf's interpolation, whose ``oc.env``
resolver would copy an environment variable (an API key) into config.yaml and W&B.
"""

from __future__ import annotations

from typing import Any

import yaml

from datamodules.configkit.errors import ConfigError

INTERPOLATION = "${"
_NODE_EVENTS = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent, yaml.AliasEvent)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def yaml_error_line(e: yaml.YAMLError) -> str:
    """A PyYAML error as one line: the problem and where it is."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or getattr(e, "context", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(e).split())


def check_yaml(text: str, source: str, mapping: bool = True) -> None:
    """Raise ConfigError naming ``source`` when ``text`` is not YAML, holds an explicit tag, or (``mapping``)
    is not a mapping at the top."""
    try:
        events = list(yaml.parse(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as e:
        raise ConfigError(f"{source} is not valid YAML: {yaml_error_line(e)}; fix the syntax") from None
    nodes = [ev for ev in events if isinstance(ev, _NODE_EVENTS)]
    for ev in nodes:
        tag = getattr(ev, "tag", None)
        if tag is not None:
            shown = "!!" + tag[len("tag:yaml.org,2002:") :] if tag.startswith("tag:yaml.org,2002:") else tag
            raise ConfigError(
                f"{source}: the YAML tag '{_short(shown, 60)}' (line {ev.start_mark.line + 1}) is not allowed: "
                "classreg configs hold plain values (numbers, strings, lists, mappings); remove the tag"
            )
    if mapping and nodes and not isinstance(nodes[0], yaml.MappingStartEvent):
        raise ConfigError(f"{source} must be a mapping of config keys (e.g. `optim: {{lr: 0.1}}`), not a list or value")


def refuse_interpolation(tree: Any, source: str, prefix: str = "") -> None:
    """Raise ConfigError naming the key of the first key or string value in ``tree`` (plain containers)
    that holds ``${``."""
    if isinstance(tree, dict):
        children = [(key, f"{prefix}.{key}" if prefix else str(key), value) for key, value in tree.items()]
    elif isinstance(tree, (list, tuple)):
        children = [(None, f"{prefix}[{i}]", value) for i, value in enumerate(tree)]
    else:
        return
    for key, dotted, value in children:
        for text in (key, value):
            if isinstance(text, str) and INTERPOLATION in text:
                raise ConfigError(
                    f"{source}: '{_short(dotted, 60)}' holds the interpolation {_short(text)!r}; classreg does not "
                    "resolve `${...}` in configs (it could copy environment variables such as API keys into "
                    'config.yaml and W&B): write the value itself (in a shell: key="$VAR")'
                )
        refuse_interpolation(value, source, dotted)
