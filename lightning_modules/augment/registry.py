"""Augmentation policies by name, and the config-time checks of ``aug.policy`` / ``aug.custom``."""

from __future__ import annotations

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from datamodules.configkit import ConfigError, did_you_mean, validate
from lightning_modules.augment.policy import Policy

POLICIES: dict[str, type[Policy]] = {}


def register_policy(name: str):
    """Class decorator: ``@register_policy("my_policy")`` makes ``aug.policy: [my_policy]`` use the class."""

    def add(cls: type[Policy]) -> type[Policy]:
        if name in POLICIES and POLICIES[name] is not cls:
            raise ValueError(f"augmentation policy '{name}' is already registered ({POLICIES[name].__qualname__})")
        cls.name = name
        POLICIES[name] = cls
        return cls

    return add


def get_policy(name: str, where: str = "aug.policy") -> type[Policy]:
    if name not in POLICIES:
        raise ConfigError(
            f"unknown augmentation policy '{name}' in {where}. Registered policies: "
            f"{', '.join(sorted(POLICIES))}."
            + did_you_mean(name, POLICIES)
            + " To add one, see docs/policies.md ('Add your own policy')."
        )
    return POLICIES[name]


def policy_params(aug, name: str):
    """The typed parameters of policy ``name`` from the ``aug`` config section."""
    cls = get_policy(name)
    if cls.config_key:
        return getattr(aug, cls.config_key)
    where = f"aug.custom.{name}"
    values = aug.custom.get(name) or {}
    try:
        params = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls.Params), values))
    except OmegaConfBaseException as e:
        allowed = list(OmegaConf.structured(cls.Params).keys())
        raise ConfigError(
            f"bad {where}: {str(e).splitlines()[0]}. Parameters of '{name}': {', '.join(allowed) or 'none'}."
        ) from None
    validate(params, where + ".")
    return params


def check_policy_names(aug, where: str = "aug") -> None:
    """Every name in aug.policy and aug.custom is registered, its parameters are valid, at most one sets the size."""
    for name in aug.policy:
        get_policy(name, f"{where}.policy")
        policy_params(aug, name)
    for name in aug.custom:
        cls = get_policy(name, f"{where}.custom")
        if cls.config_key:
            raise ConfigError(
                f"{where}.custom.{name}: '{name}' is a built-in policy; set {where}.{cls.config_key}.* instead"
            )
        policy_params(aug, name)
    sizing = [n for n in aug.policy if POLICIES[n].sets_size]
    if len(sizing) > 1:
        raise ConfigError(
            f"{where}.policy={list(aug.policy)} has {len(sizing)} policies that crop/resize "
            f"({', '.join(sizing)}); keep one"
        )


def build_policies(aug, image_size: int) -> list[Policy]:
    return [get_policy(name)(policy_params(aug, name), image_size) for name in aug.policy]
