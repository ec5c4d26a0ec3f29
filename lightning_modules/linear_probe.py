"""A linear probe: a backbone frozen from an upstream checkpoint, and a new linear head for downstream classes."""

from __future__ import annotations

import torch

from lightning_modules.checkpoint_io import CheckpointError, load_checkpoint
from lightning_modules.classifier import Classifier


def backbone_state(checkpoint_path, trust: bool = False) -> dict:
    """The backbone weights (``model.*`` without the classification head) of a `classreg fit` checkpoint,
    loaded as tensors only (lightning_modules/checkpoint_io.py; ``trust``: full unpickling)."""
    state = load_checkpoint(checkpoint_path, trust).get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"checkpoint {checkpoint_path} has no state_dict of tensors: was it written by `classreg fit`?"
        )
    return {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.") and not k.startswith("model.fc.")}


class LinearProbe(Classifier):
    """Trains only ``model.fc``; the backbone keeps its weights and its batch-norm statistics (eval mode)."""

    def __init__(self, config: dict, class_names: list[str], backbone: dict | None = None):
        super().__init__(config, class_names)
        if backbone is not None:
            missing, unexpected = self.model.load_state_dict(backbone, strict=False)
            if unexpected or set(missing) != {"fc.weight", "fc.bias"}:
                raise ValueError(
                    f"the checkpoint does not fit model.arch={self.model_cfg.arch}: "
                    f"missing {missing}, unexpected {unexpected}"
                )
        for name, param in self.model.named_parameters():
            param.requires_grad = name.startswith("fc.")
        self.train()  # modules start in training mode without a call to train()

    def on_train_epoch_start(self):
        self.train()  # Lightning may restore each submodule's mode directly, bypassing train()

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()
        self.model.fc.train(mode)
        return self
