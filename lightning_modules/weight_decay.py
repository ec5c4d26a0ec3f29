"""Weight-decay policies: which parameters decay, L2 vs decoupled, constant vs following the LR schedule."""

from __future__ import annotations

from dataclasses import dataclass

from datamodules.configkit import bounded, choice


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
        help="`l2`: added to the gradient (SGD's `weight_decay`); `decoupled`: after each step "
        "`p *= 1 - lr * wd.value * s` (SGDW, as AdamW; `lr`: `optim.lr` after `optim.lr_scaling`)",
    )
    schedule: str = choice(
        "constant",
        ["constant", "follow_lr"],
        help="`follow_lr`: the coefficient is multiplied by the LR schedule's multiplier `s` "
        "(warm-up, cosine); `constant`: `s = 1`",
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


def decay_multiplier(group: dict, schedule: str) -> float:
    """1, or the LR schedule's current multiplier (lr / initial_lr) with ``schedule=follow_lr``."""
    if schedule == "constant":
        return 1.0
    initial = group.get("initial_lr", group["lr"])
    return group["lr"] / initial if initial else 0.0


def install(optimizer, wd: WeightDecayConfig) -> None:
    """l2: before every step, set each group's L2 coefficient for this step.
    decoupled: SGD gets no L2 term; after every step, p <- p * (1 - initial_lr * coefficient) for every
    parameter that has a gradient (after, not before: Lightning runs the backward pass inside step())."""

    def before_step(opt, args, kwargs):
        for group in opt.param_groups:
            l2 = wd.mode == "l2"
            group["weight_decay"] = group["base_weight_decay"] * decay_multiplier(group, wd.schedule) if l2 else 0.0

    import torch

    def after_step(opt, args, kwargs):
        with torch.no_grad():
            for group in opt.param_groups:
                value = group["base_weight_decay"] * decay_multiplier(group, wd.schedule)
                if value:
                    factor = 1.0 - group.get("initial_lr", group["lr"]) * value
                    for p in group["params"]:
                        if p.grad is not None:
                            p.mul_(factor)

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
