"""Weight-decay policies: which parameters decay, L2 vs decoupled, and how the per-step shrink follows the LR.

``wd.schedule`` fixes the shrink that decay alone causes per step (a parameter with zero gradient loses this
fraction): ``shrink_follows_lr``: ``lr_t x wd.value``; ``constant_shrink``: ``lr_0 x wd.value`` every step.
``wd.mode`` only says how that shrink is applied: through the gradient (``l2``) or after the step (``decoupled``).
"""

from __future__ import annotations

from dataclasses import dataclass

from datamodules.configkit import bounded, choice

SCHEDULES = ("shrink_follows_lr", "constant_shrink")


@dataclass
class WeightDecayConfig:
    value: float = bounded(1e-4, 0.0, weaker="low", help="weight-decay coefficient")
    exclude: str = choice(
        "none",
        ["none", "norm_and_bias"],
        help="`norm_and_bias`: normalization-layer parameters and every bias get no decay (timm-style groups)",
    )
    mode: str = choice(
        "l2",
        ["l2", "decoupled"],
        help="how the shrink of `wd.schedule` is applied: `l2` through the gradient (SGD's `weight_decay`, so "
        "with momentum it also enters the momentum buffer); `decoupled` after each step, `p *= 1 - shrink` (SGDW)",
    )
    schedule: str = choice(
        "shrink_follows_lr",
        SCHEDULES,
        help="the fraction of a parameter that decay removes per step (to first order, in both modes): "
        "`shrink_follows_lr`: `lr_t * wd.value` (`lr_t`: the scheduled lr, after `optim.lr_scaling`; l2: SGD's "
        "`weight_decay=wd.value`; decoupled: AdamW's convention); `constant_shrink`: `lr_0 * wd.value` every "
        "step whatever the LR schedule (`lr_0`: the lr before warm-up and cosine)",
        retired={
            "constant": "it meant two things: with wd.mode=l2 a constant coefficient (now `shrink_follows_lr`), "
            "with wd.mode=decoupled a constant shrink (now `constant_shrink`). Set wd.schedule to the one you mean",
            "follow_lr": "it meant two things: with wd.mode=decoupled `p *= 1 - lr_t * wd.value` (now "
            "`shrink_follows_lr`), with wd.mode=l2 a coefficient scaled by the LR multiplier (a shrink following "
            "its square, no longer offered). Set wd.schedule=shrink_follows_lr or constant_shrink",
        },
    )


def norm_layers() -> tuple[type, ...]:
    from torch import nn

    return nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm


def param_groups(model, wd: WeightDecayConfig) -> list[dict]:
    """Optimizer parameter groups: "decay" and, with ``exclude=norm_and_bias``, "no_decay" (norm layers, biases)."""
    norms = norm_layers()
    decay, no_decay = ([], []), ([], [])
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            excluded = wd.exclude == "norm_and_bias" and (isinstance(module, norms) or name == "bias")
            target = no_decay if excluded else decay
            target[0].append(param)
            target[1].append(f"{module_name}.{name}" if module_name else name)
    groups = [("decay", decay, wd.value), ("no_decay", no_decay, 0.0)]
    return [
        {"name": n, "params": p, "param_names": names, "base_weight_decay": value, "weight_decay": value}
        for n, (p, names), value in groups
        if p
    ]


def shrink_per_step(group: dict, schedule: str) -> float:
    """The fraction of a parameter that decay removes in this step: lr_t (or lr_0) x the group's coefficient."""
    lr = group.get("initial_lr", group["lr"]) if schedule == "constant_shrink" else group["lr"]
    return lr * group["base_weight_decay"]


def install(optimizer, wd: WeightDecayConfig) -> None:
    """Before every step, the shrink of ``wd.schedule`` for this step: l2 sets SGD's coefficient to shrink / lr_t;
    decoupled gives SGD no L2 term and, after the step, multiplies every parameter that has a gradient by
    1 - shrink (after, not before: Lightning runs the backward pass inside step())."""
    import torch

    def before_step(opt, args, kwargs):
        for group in opt.param_groups:
            shrink = shrink_per_step(group, wd.schedule)
            group["weight_decay"] = shrink / group["lr"] if wd.mode == "l2" and group["lr"] > 0 else 0.0
            group["decay_shrink"] = shrink

    def after_step(opt, args, kwargs):
        with torch.no_grad():
            for group in opt.param_groups:
                if group["decay_shrink"]:
                    for p in group["params"]:
                        if p.grad is not None:
                            p.mul_(1.0 - group["decay_shrink"])

    before_step(optimizer, (), {})
    optimizer.register_step_pre_hook(before_step)
    if wd.mode == "decoupled":
        optimizer.register_step_post_hook(after_step)


def describe(optimizer, wd: WeightDecayConfig) -> dict:
    groups = []
    for group in optimizer.param_groups:
        groups.append(
            {
                "name": group.get("name", ""),
                "weight_decay": group["base_weight_decay"],
                "parameters": len(group["params"]),
                "elements": sum(p.numel() for p in group["params"]),
                "param_names": group.get("param_names", []),
            }
        )
    return {"mode": wd.mode, "schedule": wd.schedule, "exclude": wd.exclude, "groups": groups}
