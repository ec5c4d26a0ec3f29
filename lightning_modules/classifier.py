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
        self.summed_criterion = nn.CrossEntropyLoss(label_smoothing=self.optim_cfg.label_smoothing, reduction="sum")
        m = self.metrics_cfg
        self.real_labels = RealLabels(m.real_labels, self.class_names) if m.real_labels else None
        real = self.real_labels is not None
        self.val_counts = PerClassCounts(num_classes, m.confusion_matrix, real_labels=real)
        self.test_counts = PerClassCounts(num_classes, m.confusion_matrix, real_labels=real)
        # (sum of per-image losses, images) of the current evaluation, summed over ranks once at its end
        self.register_buffer("eval_loss", torch.zeros(2, dtype=torch.float64), persistent=False)
        self.last_per_class: tuple[torch.Tensor, torch.Tensor] | None = None
        self.last_results: PerClassResult | None = None  # of the latest validation
        self.last_test_results: PerClassResult | None = None  # of the final model on the test split

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
        acc = ((logits.argmax(1) == labels) & torch.isfinite(logits).all(1)).float().mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=len(labels))
        self.log("train/acc", acc, prog_bar=True, batch_size=len(labels))
        return loss

    def _evaluate(self, batch, counts: PerClassCounts) -> None:
        images, labels, *rest = batch  # evaluation batches may carry the sample keys third
        logits = self(images)
        self.eval_loss += torch.stack(
            [self.summed_criterion(logits, labels).double(), self.eval_loss.new_tensor(len(labels))]
        )
        real = self.real_labels.targets(rest[0] if rest else None, labels.device) if self.real_labels else (None, None)
        counts.update(logits, labels, *real)

    def _sum_over_ranks(self, t: torch.Tensor) -> torch.Tensor:
        return self.trainer.strategy.reduce(t, reduce_op="sum")

    def _reduce(self, counts: PerClassCounts) -> tuple[PerClassResult, float]:
        """Per-class counts (one all-reduce) and the mean loss over every image of every rank (one more)."""
        result = counts.reduce(self._sum_over_ranks, self.class_names)
        loss_sum, images = self._sum_over_ranks(self.eval_loss.clone()).tolist()
        self.eval_loss.zero_()
        return result, loss_sum / images if images else float("nan")

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, self.val_counts)

    def on_validation_epoch_end(self):
        result, loss = self._reduce(self.val_counts)
        self.last_results = result
        self.last_per_class = (torch.from_numpy(result.correct), torch.from_numpy(result.total))
        summary = result.summary(self.metrics_cfg.worst_fraction)
        self.log("val/loss", loss)
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

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, self.test_counts)

    def on_test_epoch_end(self):
        result, loss = self._reduce(self.test_counts)
        self.last_test_results = result
        self.log("test/loss", loss)
        self.log("test/acc", result.summary()["accuracy"])

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
