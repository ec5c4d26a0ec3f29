"""Compile an ``aug`` config section into DALI operators (the ``data.backend=dali`` training transform).

Class-conditional augmentation becomes per-sample parameters: every class's policy list is merged into one
list (in order), and each parameter that differs between classes is looked up from the sample's label with
``fn.lookup_table``. A policy missing from some class's list runs there with its neutral parameters
(``Policy.dali_neutral()``: no flip, no jitter, padding 0, rrc at area 1 and aspect 1, i.e. resize + centre
crop), which is what that class's own list does. ``center_crop`` is that same neutral crop, so with class
overrides it leaves the merge: its classes get the neutral window of the other classes' cropping policy.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from nvidia.dali import fn, types

from datamodules.configkit import ConfigError
from lightning_modules.augment.config import AugConfig
from lightning_modules.augment.registry import get_policy, policy_params
from lightning_modules.augment.transform import class_index


def merged_order(lists: list[list[str]]) -> list[str]:
    """One list in which every class's policy list is a subsequence (ConfigError if orders conflict)."""
    order: list[str] = []
    for names in lists:
        position = 0
        for name in names:
            if name in order:
                if order.index(name) < position:
                    raise ConfigError(
                        f"aug.class_overrides: policy lists {lists} apply policies in conflicting orders; the DALI "
                        "backend needs one order (e.g. always rrc before flip), or use data.backend=torchvision"
                    )
                position = order.index(name) + 1
            else:
                order.insert(position, name)
                position += 1
    return order


def _lookup(labels, default: float, per_class: dict[int, float]):
    return fn.lookup_table(
        labels,
        keys=list(per_class),
        values=[float(v) for v in per_class.values()],
        default_value=float(default),
        dtype=types.FLOAT,
    )


def per_sample_params(name: str, default, per_class: dict[int, object], labels) -> SimpleNamespace:
    """The policy's parameters: a plain value where every class agrees, else a per-sample DataNode from the label."""
    values = SimpleNamespace(varies=False)
    for f in dataclasses.fields(default):
        base = getattr(default, f.name)
        other = {c: getattr(p, f.name) for c, p in per_class.items() if getattr(p, f.name) != base}
        if not other:
            setattr(values, f.name, base)
            continue
        values.varies = True
        if isinstance(base, (int, float)) and not isinstance(base, bool):
            setattr(values, f.name, _lookup(labels, base, other))
        elif isinstance(base, (list, tuple)) and all(len(v) == len(base) for v in other.values()):
            setattr(
                values, f.name, [_lookup(labels, b, {c: v[i] for c, v in other.items()}) for i, b in enumerate(base)]
            )
        else:
            raise ConfigError(
                f"aug.class_overrides: '{name}.{f.name}' differs between classes ({base!r} vs "
                f"{sorted(map(repr, set(map(str, other.values()))))}); the DALI backend varies numbers "
                "per class only. Use data.backend=torchvision for this override"
            )
    return values


def build_dali_policies(aug: AugConfig, class_names: list[str], image_size: int, labels) -> list:
    """The merged policy list with per-sample parameters (called inside a DALI pipeline definition)."""
    variants = {None: aug}
    for key in aug.class_overrides:
        variants[class_index(key, class_names)] = aug.for_class(key)
    lists = [list(v.policy) for v in variants.values()]
    if len(variants) > 1:
        lists = [[name for name in names if name != "center_crop"] for names in lists]
    policies = []
    for name in merged_order(lists):
        cls = get_policy(name)
        chosen = {}
        for index, variant in variants.items():
            if name in variant.policy:
                chosen[index] = policy_params(variant, name)
            elif cls.dali_neutral() is not None:
                chosen[index] = cls.dali_neutral()
            else:
                raise ConfigError(
                    f"aug.class_overrides: policy '{name}' is used for some classes only and has no "
                    "neutral setting for the others (Policy.dali_neutral); use data.backend=torchvision"
                )
        default = chosen.pop(None)
        policies.append(cls(per_sample_params(name, default, chosen, labels), image_size))
    return policies


def check_dali_support(aug: AugConfig) -> None:
    """ConfigError before any work when a policy of ``aug`` (or of a class override) has no DALI implementation."""
    from lightning_modules.augment.policy import Policy

    names = set(aug.policy)
    for key in aug.class_overrides:
        names |= set(aug.for_class(key).policy)
    missing = sorted(n for n in names if get_policy(n).dali is Policy.dali)
    if missing:
        raise ConfigError(
            f"augmentation policies {missing} have no DALI implementation (Policy.dali); "
            "use data.backend=torchvision or implement dali() (docs/policies.md: 'Add your own policy')"
        )


def compile_dali(encoded, labels, aug: AugConfig, class_names: list[str], image_size: int, device: str):
    """Encoded images + labels -> uint8 CHW images of ``image_size``, augmented per sample."""
    policies = build_dali_policies(aug, class_names, image_size, labels)
    size = float(image_size)
    images = None
    if policies and policies[0].sets_size:
        images = policies[0].dali_decode(encoded, labels, device)  # fused decode + crop, when it has one
    if images is not None:
        policies = policies[1:]
        hw = (size, size)
    else:
        images = fn.decoders.image(encoded, device=device, output_type=types.RGB)
        if any(p.sets_size for p in policies):
            shape = fn.peek_image_shape(encoded)
            hw = (fn.cast(shape[0], dtype=types.FLOAT), fn.cast(shape[1], dtype=types.FLOAT))
        else:  # no cropping policy: resize + centre crop, as the torchvision backend does
            images = fn.crop(fn.resize(images, resize_shorter=size), crop=(size, size))
            hw = (size, size)
    for policy in policies:
        policy.input_hw = hw
        images = policy.dali(images, labels)
        if policy.sets_size:
            hw = (size, size)
    return fn.crop_mirror_normalize(images, dtype=types.UINT8, output_layout="CHW")  # HWC -> CHW, measured faster
