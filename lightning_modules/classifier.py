"""The LightningModule: a ResNet trained with SGD, evaluated per class."""

from __future__ import annotations

import dataclasses

import pytorch_lightning as pl
import torch
from torch import nn

from datamodules.configkit import typed
from lightning_modules import weight_decay
from lightning_modules.metrics.config import MetricsConfig
from lightning_modules.metrics.per_class_metrics import PerClassCounts, PerClassResult
from lightning_modules.metrics.real_labels import RealLabels
from lightning_modules.models import ModelConfig, build_model
from lightning_modules.optim import OptimConfig, scaled_lr, warmup_cosine
from lightning_modules.weight_decay import WeightDecayConfig


class Classifier(pl.LightningModule):
    """``config``: a run's whole resolved config as plain containers (saved as the checkpoint's hyper-parameters,
    so that ``load_from_checkpoint`` rebuilds the module); the module reads its ``model``, ``optim``, ``wd`` and
    ``metrics`` sections and ``data.image_size`` / ``data.batch_size``."""

    def __init__(self, config: dict, class_names: list[str]):
        super().__init__()
        self.save_hyperparameters({"config": config, "class_names": list(class_names)})
        self.model_cfg: ModelConfig = typed(ModelConfig, config.get("model", {}))
        self.optim_cfg: OptimConfig = typed(OptimConfig, config.get("optim", {}))
        self.wd_cfg: WeightDecayConfig = typed(WeightDecayConfig, config.get("wd", {}))
        self.metrics_cfg: MetricsConfig = typed(MetricsConfig, config.get("metrics", {}))
        self.image_size, self.batch_size = config["data"]["image_size"], config["data"]["batch_size"]
        self.class_names = list(class_names)
        num_classes = len(class_names)
        self.model = build_model(self.model_cfg.arch, num_classes, self.model_cfg.stem, self.image_size)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.optim_cfg.label_smoothing)
        m = self.metrics_cfg
        self.real_labels = RealLabels(m.real_labels, self.class_names) if m.real_labels else None
        self.val_counts = PerClassCounts(num_classes, m.confusion_matrix, real_labels=self.real_labels is not None)
        self.last_per_class: tuple[torch.Tensor, torch.Tensor] | None = None
        self.last_results: PerClassResult | None = None

    @classmethod
    def from_config(cls, cfg, class_names: list[str]) -> "Classifier":
        """From a config dataclass tree (a ``RunConfig``)."""
        return cls(dataclasses.asdict(cfg), class_names)

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        logits = self(images)
        loss = self.criterion(logits, labels)
        acc = (logits.argmax(1) == labels).float().mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=len(labels))
        self.log("train/acc", acc, prog_bar=True, batch_size=len(labels))
        return loss

    def validation_step(self, batch, batch_idx):
        images, labels, *rest = batch  # evaluation batches may carry the sample keys third
        logits = self(images)
        self.log("val/loss", self.criterion(logits, labels), sync_dist=True, batch_size=len(labels))
        real = self.real_labels.targets(rest[0] if rest else None, labels.device) if self.real_labels else (None, None)
        self.val_counts.update(logits, labels, *real)

    def on_validation_epoch_end(self):
        # One all-reduce of all counts: exact per-class totals over every rank.
        result = self.val_counts.reduce(lambda t: self.trainer.strategy.reduce(t, reduce_op="sum"), self.class_names)
        self.last_results = result
        self.last_per_class = (torch.from_numpy(result.correct), torch.from_numpy(result.total))
        summary = result.summary(self.metrics_cfg.worst_fraction)
        self.log("val/acc", summary["accuracy"], prog_bar=True)
        self.log("val/top5_acc", summary["top5_accuracy"])
        for key, name in (
            ("mean_class_accuracy", "mean_class_acc"),
            ("worst_class_accuracy", "worst_class_acc"),
            ("worst_fraction_mean_accuracy", "worst_fraction_mean_class_acc"),
            ("class_accuracy_std", "class_acc_std"),
            ("real_accuracy", "real_acc"),
            ("real_mean_class_accuracy", "real_mean_class_acc"),
        ):
            if summary.get(key) is not None:
                self.log(f"val/{name}", summary[key])

    def configure_optimizers(self):
        o = self.optim_cfg
        lr, _ = scaled_lr(o, self.batch_size, self.trainer.world_size)
        optimizer = torch.optim.SGD(
            weight_decay.param_groups(self.model, self.wd_cfg), lr=lr, momentum=o.momentum, nesterov=o.nesterov
        )
        total = int(self.trainer.estimated_stepping_batches)
        warmup = int(round(o.warmup_epochs * total / max(1, self.trainer.max_epochs)))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, total, warmup, o.warmup_start_factor, o.schedule)
        )
        weight_decay.install(optimizer, self.wd_cfg)  # after LambdaLR has set each group's initial_lr
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
