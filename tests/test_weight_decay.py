"""Weight-decay policies: parameter groups, L2 vs decoupled, the schedule, and a real fit that reports them."""

import json

import pytest
import torch
import yaml
from torch import nn

from datamodules.configkit import ConfigError
from launch.cli import main
from launch.config import load_config
from lightning_modules import weight_decay
from lightning_modules.classifier import Classifier
from lightning_modules.models import build_model
from lightning_modules.weight_decay import WeightDecayConfig

NORMS = (nn.BatchNorm2d,)


def names_by_kind(model: nn.Module):
    norm, bias, weight = set(), set(), set()
    for module_name, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}"
            if isinstance(module, NORMS):
                norm.add(full)
            elif name == "bias":
                bias.add(full)
            elif isinstance(module, (nn.Conv2d, nn.Linear)):
                weight.add(full)
    return norm, bias, weight


@pytest.mark.parametrize("arch", ["resnet18", "resnet20"])
def test_norm_and_bias_exclusion_groups(arch):
    model = build_model(arch, 10, image_size=32)
    norm, bias, weight = names_by_kind(model)
    assert norm and bias and weight  # BatchNorm weights/biases, the classifier's bias, conv/linear weights
    groups = weight_decay.param_groups(model, WeightDecayConfig(value=5e-4, exclude="norm_and_bias"))
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"decay", "no_decay"}
    assert by_name["decay"]["weight_decay"] == 5e-4 and by_name["no_decay"]["weight_decay"] == 0.0
    assert set(by_name["decay"]["param_names"]) == weight
    assert set(by_name["no_decay"]["param_names"]) == norm | bias
    total = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for g in groups for p in g["params"]) == total
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))

    (everything,) = weight_decay.param_groups(model, WeightDecayConfig(value=5e-4, exclude="none"))
    assert set(everything["param_names"]) == norm | bias | weight and everything["weight_decay"] == 5e-4


def one_step(mode: str, schedule: str, lr_factor: float):
    """One SGD step with zero loss gradient on a conv+BN+linear model; returns (before, after) parameters."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    wd = WeightDecayConfig(value=0.1, exclude="norm_and_bias", mode=mode, schedule=schedule)
    opt = torch.optim.SGD(weight_decay.param_groups(model, wd), lr=0.5, momentum=0.0)
    torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor)  # lr = 0.5 * lr_factor
    weight_decay.install(opt, wd)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    def closure():  # as Lightning does: the backward pass runs inside step()
        opt.zero_grad()
        loss = 0.0 * model(torch.randn(2, 3, 8, 8)).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return before, dict(model.named_parameters())


@pytest.mark.parametrize(
    "mode,schedule,lr_factor,shrink",
    [
        ("l2", "shrink_follows_lr", 1.0, 0.5 * 0.1),  # p -= lr * wd * p (SGD's weight_decay)
        ("l2", "shrink_follows_lr", 0.5, 0.25 * 0.1),  # the LR schedule scales the shrink
        ("l2", "constant_shrink", 0.5, 0.5 * 0.1),  # the coefficient grows as the lr falls: lr0 * wd
        ("decoupled", "shrink_follows_lr", 1.0, 0.5 * 0.1),  # p *= 1 - lr * wd
        ("decoupled", "shrink_follows_lr", 0.5, 0.25 * 0.1),  # p *= 1 - lr_t * wd (torch AdamW's convention)
        ("decoupled", "constant_shrink", 0.5, 0.5 * 0.1),  # p *= 1 - lr0 * wd, independent of the LR schedule
    ],
)
def test_decay_step(mode, schedule, lr_factor, shrink):
    before, after = one_step(mode, schedule, lr_factor)
    for name in ("0.weight", "3.weight"):
        torch.testing.assert_close(after[name].detach(), before[name] * (1 - shrink))
    for name in ("0.bias", "1.weight", "1.bias", "3.bias"):  # excluded: untouched by a zero gradient
        assert torch.equal(after[name].detach(), before[name]), name


@pytest.mark.parametrize("schedule", WeightDecayConfig.__dataclass_fields__["schedule"].metadata["choices"])
@pytest.mark.parametrize("lr_factor", [1.0, 0.5, 0.01])  # e.g. early warm-up, mid cosine, its end
def test_switching_only_the_mode_keeps_the_shrink_of_each_step(schedule, lr_factor):
    """wd.schedule has one meaning: l2 and decoupled take the same fraction off a parameter with zero gradient."""
    (before, l2), (_, decoupled) = (one_step(mode, schedule, lr_factor) for mode in ("l2", "decoupled"))
    for name in ("0.weight", "3.weight"):
        shrink_l2 = 1 - l2[name].detach() / before[name]
        shrink_decoupled = 1 - decoupled[name].detach() / before[name]
        torch.testing.assert_close(shrink_l2, shrink_decoupled)
        assert shrink_l2.mean() > 0


@pytest.mark.parametrize("value,mode,meant", [("constant", "l2", "shrink_follows_lr"), ("follow_lr", "l2", "square")])
def test_retired_schedule_values_say_what_they_meant(value, mode, meant):
    with pytest.raises(ConfigError, match=rf"'wd.schedule': '{value}' was retired: it meant two things.*{meant}"):
        load_config(None, [f"wd.schedule={value}", f"wd.mode={mode}"])


def test_short_fit_with_class_conditional_policy_and_grouped_decay(cifar_shards, tmp_path, caplog):
    caplog.set_level("INFO")
    rc = main(
        [
            "fit",
            "-c",
            "configs/cifar10_resnet18.yaml",
            f"data.root={cifar_shards}",
            f"out_dir={tmp_path}",
            "name=cc",
            "model.arch=resnet20",
            "data.batch_size=32",
            "data.num_workers=0",
            "trainer.max_epochs=1",
            "trainer.progress_bar=false",
            "trainer.limit_train_batches=3",
            "aug.policy=[rrc,flip,color_jitter]",
            "aug.rrc.min_scale=0.35",
            "aug.color_jitter.strength=0.2",
            "aug.class_overrides.cat.policy=[none]",
            "aug.class_overrides.dog.rrc.min_scale=0.8",
            "wd.value=5e-4",
            "wd.exclude=norm_and_bias",
            "wd.mode=decoupled",
            "wd.schedule=shrink_follows_lr",
        ]
    )
    assert rc == 0
    run = tmp_path / "cc"
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["aug"]["policy"] == ["rrc", "flip", "color_jitter"]
    assert resolved["aug"]["class_overrides"] == {"cat": {"policy": ["none"]}, "dog": {"rrc": {"min_scale": 0.8}}}
    assert resolved["wd"] == {
        "value": 5e-4,
        "exclude": "norm_and_bias",
        "mode": "decoupled",
        "schedule": "shrink_follows_lr",
    }
    assert "weight_decay" not in resolved["optim"]
    assert load_config(run / "config.yaml").aug.for_class("dog").rrc.min_scale == 0.8

    report = json.loads((run / "param_groups.json").read_text())
    assert (report["mode"], report["schedule"], report["exclude"]) == (
        "decoupled",
        "shrink_follows_lr",
        "norm_and_bias",
    )
    groups = {g["name"]: g for g in report["groups"]}
    assert groups["decay"]["weight_decay"] == 5e-4 and groups["no_decay"]["weight_decay"] == 0.0
    model = Classifier.load_from_checkpoint(run / "checkpoints" / "last.ckpt").model
    norm, bias, weight = names_by_kind(model)
    assert set(groups["decay"]["param_names"]) == weight
    assert set(groups["no_decay"]["param_names"]) == norm | bias
    assert sum(g["elements"] for g in groups.values()) == sum(p.numel() for p in model.parameters())
    assert sum(g["parameters"] for g in groups.values()) == len(list(model.parameters()))
    logged = caplog.text
    assert "weight decay (decoupled, shrink_follows_lr, exclude=norm_and_bias)" in logged
    assert f"decay 0.0005 on {groups['decay']['parameters']} tensors" in logged
    assert f"decay 0 on {groups['no_decay']['parameters']} tensors" in logged
