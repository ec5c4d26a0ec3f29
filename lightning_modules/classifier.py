"""The LightningModule: a ResNet trained with SGD, evaluated per class."""
from __future__ import annotations

import math
from dataclasses import asdict

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from launch.config import RunConfig
from lightning_modules import weight_decay
from lightning_modules.models import build_model


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, start_factor: float, schedule: str) -> float:
    """LR multiplier: linear warm-up from ``start_factor`` to 1, then cosine to 0 (or constant)."""
    if warmup_steps > 0 and step < warmup_steps:
        return start_factor + (1.0 - start_factor) * step / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class Classifier(pl.LightningModule):
    def __init__(self, config: dict, class_names: list[str]):
        super().__init__()
        # Plain containers so that load_from_checkpoint() rebuilds the module without our classes.
        self.save_hyperparameters({"config": config, "class_names": list(class_names)})
        self.cfg: RunConfig = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RunConfig), config))
        self.class_names = list(class_names)
        num_classes = len(class_names)
        self.model = build_model(self.cfg.model.arch, num_classes, self.cfg.model.stem, self.cfg.data.image_size)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.cfg.optim.label_smoothing)
        self.val_confusion = MulticlassConfusionMatrix(num_classes)
        self.last_per_class: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def from_config(cls, cfg: RunConfig, class_names: list[str]) -> "Classifier":
        return cls(OmegaConf.to_container(OmegaConf.structured(cfg)), class_names)

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
        images, labels = batch
        logits = self(images)
        self.log("val/loss", self.criterion(logits, labels), sync_dist=True, batch_size=len(labels))
        self.val_confusion.update(logits.argmax(1), labels)

    def on_validation_epoch_end(self):
        matrix = self.val_confusion.compute()  # summed over ranks: exact counts
        self.val_confusion.reset()
        correct, total = matrix.diag(), matrix.sum(1)
        seen = total > 0
        per_class_acc = correct[seen].float() / total[seen].float()
        self.last_per_class = (correct.cpu(), total.cpu())
        self.log("val/acc", correct.sum().float() / total.sum().clamp(min=1), prog_bar=True)
        if seen.any():
            self.log("val/mean_class_acc", per_class_acc.mean())
            self.log("val/worst_class_acc", per_class_acc.min())

    def configure_optimizers(self):
        o = self.cfg.optim
        optimizer = torch.optim.SGD(
            weight_decay.param_groups(self.model, self.cfg.wd), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov
        )
        total = int(self.trainer.estimated_stepping_batches)
        warmup = int(round(o.warmup_epochs * total / max(1, self.trainer.max_epochs)))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, total, warmup, o.warmup_start_factor, o.schedule)
        )
        weight_decay.install(optimizer, self.cfg.wd)  # after LambdaLR has set each group's initial_lr
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
