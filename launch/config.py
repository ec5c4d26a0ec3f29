"""Typed run configuration: dataclasses, YAML presets, dotted overrides, validation.

A config is built from the dataclass defaults, then a YAML preset, then
``key.path=value`` overrides, and is validated before any work starts.
Field metadata declares the allowed values: ``choices`` (a list) or
``range`` ((low, high, low_inclusive, high_inclusive)); ``None`` bounds are open.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError


class ConfigError(ValueError):
    """A config key or value is wrong; the message names it and the fix."""


def choice(default, choices, help=""):
    return field(default=default, metadata={"choices": list(choices), "help": help})


def bounded(default, low=None, high=None, low_inclusive=True, high_inclusive=True, help=""):
    return field(
        default=default,
        metadata={"range": (low, high, low_inclusive, high_inclusive), "help": help},
    )


@dataclass
class DataConfig:
    root: str = ""  # folder written by `classreg shard` (holds classes.json, manifest.json)
    backend: str = choice("torchvision", ["torchvision", "dali"])
    # dali only: "auto" decodes on the GPU (nvJPEG, "mixed") when CUDA is present, else on the CPU.
    decode_device: str = choice("auto", ["auto", "cpu", "mixed"])
    train_split: str = "train"
    val_split: str = "auto"  # "auto": "val" if the shards have it, else "test"
    image_size: int = bounded(224, 8, 1024)
    batch_size: int = bounded(256, 1)
    num_workers: int = bounded(2, 0)
    shuffle_buffer: int = bounded(2000, 0)
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])


@dataclass
class ModelConfig:
    arch: str = choice("resnet50", ["resnet18", "resnet34", "resnet50", "resnet20"])
    # "small": 3x3 stride-1 stem without max-pool (CIFAR-style) for 28-64 px images;
    # "auto" picks it when data.image_size <= 64.
    stem: str = choice("auto", ["auto", "imagenet", "small"])


@dataclass
class OptimConfig:
    lr: float = bounded(0.1, 0.0, None, low_inclusive=False)
    momentum: float = bounded(0.9, 0.0, 1.0, high_inclusive=False)
    nesterov: bool = False
    label_smoothing: float = bounded(0.0, 0.0, 1.0, high_inclusive=False)
    warmup_epochs: float = bounded(0.0, 0.0)
    warmup_start_factor: float = bounded(0.1, 0.0, 1.0)
    schedule: str = choice("cosine", ["cosine", "constant"])
    # "linear": the lr used is optim.lr x global batch / lr_reference_batch (Goyal et al. 2017), where the
    # global batch is data.batch_size x trainer.devices x trainer.num_nodes; "none": optim.lr as given.
    lr_scaling: str = choice("none", ["none", "linear"])
    lr_reference_batch: int = bounded(256, 1)


@dataclass
class WeightDecayConfig:
    value: float = bounded(1e-4, 0.0)
    # "norm_and_bias": normalization-layer parameters and every bias get no decay (timm-style groups).
    exclude: str = choice("none", ["none", "norm_and_bias"])
    # "l2": added to the gradient (torch SGD weight_decay); "decoupled": p <- p * (1 - lr0 * value * s) before
    # each step (SGDW, as torch's AdamW), where s is the schedule multiplier.
    mode: str = choice("l2", ["l2", "decoupled"])
    # "follow_lr": the decay coefficient is multiplied by the LR schedule's multiplier (warm-up, cosine).
    schedule: str = choice("constant", ["constant", "follow_lr"])


@dataclass
class RRCConfig:
    """Random-resized-crop; min_scale 1.0 means no random crop (resize + centre crop)."""
    min_scale: float = bounded(0.08, 0.0, 1.0, low_inclusive=False)
    max_scale: float = bounded(1.0, 0.0, 1.0, low_inclusive=False)
    ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])

    def validate(self) -> None:
        if self.min_scale > self.max_scale:
            raise ConfigError(f"aug.rrc.min_scale={self.min_scale} is above aug.rrc.max_scale={self.max_scale}")
        if len(self.ratio) != 2 or not 0 < self.ratio[0] <= self.ratio[1]:
            raise ConfigError(f"aug.rrc.ratio={self.ratio} must be [low, high] with 0 < low <= high (e.g. [0.75, 1.333])")


@dataclass
class PadCropConfig:
    """Resize to data.image_size, pad every side, random crop back (CIFAR-style)."""
    padding: int = bounded(4, 0)
    padding_mode: str = choice("constant", ["constant", "edge", "reflect", "symmetric"])


@dataclass
class FlipConfig:
    p: float = bounded(0.5, 0.0, 1.0)


@dataclass
class ColorJitterConfig:
    """Brightness, contrast and saturation jitter of +-strength (timm's color_jitter), applied with probability p."""
    strength: float = bounded(0.4, 0.0)
    hue: float = bounded(0.0, 0.0, 0.5)
    p: float = bounded(1.0, 0.0, 1.0)


@dataclass
class AugConfig:
    """Training augmentation: ``policy`` names registered policies (lightning_modules/augment), applied in order."""
    policy: list[str] = field(default_factory=lambda: ["rrc", "flip"])
    rrc: RRCConfig = field(default_factory=RRCConfig)
    pad_crop: PadCropConfig = field(default_factory=PadCropConfig)
    flip: FlipConfig = field(default_factory=FlipConfig)
    color_jitter: ColorJitterConfig = field(default_factory=ColorJitterConfig)
    # Parameters of policies registered outside this file: {policy name: {field: value}}.
    custom: dict[str, Any] = field(default_factory=dict)
    # Class-conditional augmentation: {class name or index: a patch of this section}, e.g.
    # {"cat": {"rrc": {"min_scale": 1.0}}}; class names are checked against the shards' classes.json.
    class_overrides: dict[Any, Any] = field(default_factory=dict)

    def validate(self) -> None:
        from lightning_modules.augment import check_policy_names

        check_policy_names(self, "aug")
        for key in self.class_overrides:
            self.for_class(key)

    def for_class(self, key) -> "AugConfig":
        """This section with the override for class ``key`` applied (typed and validated)."""
        where = f"aug.class_overrides.{key}"
        patch = self.class_overrides[key]
        if not isinstance(patch, dict) or "class_overrides" in patch:
            raise ConfigError(f"{where} must be a map of aug keys to change for that class, "
                              f"e.g. {{rrc: {{min_scale: 1.0}}}} or {{policy: [flip]}}; got {patch!r}")
        base = OmegaConf.structured(dataclasses.replace(self, class_overrides={}))
        obj = OmegaConf.to_object(_merge(base, OmegaConf.create(patch), where, AugConfig, prefix="aug."))
        try:
            validate(obj, "aug.")
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        return obj


@dataclass
class TrainerConfig:
    max_epochs: int = bounded(90, 1)
    accelerator: str = choice("auto", ["auto", "cpu", "gpu"])
    devices: int = bounded(1, 1)
    num_nodes: int = bounded(1, 1)
    precision: str = choice("32-true", ["32-true", "bf16-mixed", "16-mixed"])
    deterministic: bool = True
    limit_train_batches: float = bounded(1.0, 0.0, None, low_inclusive=False)
    limit_val_batches: float = bounded(1.0, 0.0, None, low_inclusive=False)
    check_val_every_n_epoch: int = bounded(1, 1)
    log_every_n_steps: int = bounded(50, 1)
    progress_bar: bool = True
    # GPU features, used only when the run trains on CUDA (see runtime.json in the run folder):
    channels_last: bool = True  # NHWC weights and activations (tensor cores)
    cudnn_benchmark: bool = True  # autotuned cuDNN kernels; needs trainer.deterministic=false
    compile: bool = False  # torch.compile the module (also on CPU; first steps are slow while it compiles)
    compile_backend: str = choice("inductor", ["inductor", "aot_eager", "cudagraphs"])  # torch.compile(backend=)


@dataclass
class MetricsConfig:
    # Also write confusion_matrices/epoch_NNN.csv (rows: true class, columns: predicted) after each validation.
    confusion_matrix: bool = False
    # ImageNet ReaL multi-labels: "" (off), "imagenet-x" (the file shipped in the imagenet-x package)
    # or the path of a JSON list with one list of class indices per ImageNet validation image.
    real_labels: str = ""
    worst_fraction: float = bounded(0.1, 0.0, 1.0, low_inclusive=False)  # "mean of the worst 10% of classes"


@dataclass
class LoggerConfig:
    wandb: bool = True  # local files (per_class.csv, metrics.json) are written either way
    project: str = "classreg"
    entity: str = ""  # "" = your default W&B entity
    group: str = ""  # the sweep name; "" = no group
    # auto: online when an API key is configured and the W&B server answers, else offline (`wandb sync` later)
    mode: str = choice("auto", ["auto", "online", "offline"])


@dataclass
class RunConfig:
    name: str = "run"
    out_dir: str = "runs"  # results go to out_dir/name
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    wd: WeightDecayConfig = field(default_factory=WeightDecayConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


def _keys_at(schema: type, dotted: str) -> list[str]:
    """Field names of the dataclass at ``dotted`` inside ``schema`` ([] if there is none)."""
    node = schema
    for part in [p for p in dotted.split(".") if p]:
        node = typing.get_type_hints(node).get(part) if dataclasses.is_dataclass(node) else None
    return [f.name for f in dataclasses.fields(node)] if dataclasses.is_dataclass(node) else []


# Keys that moved to another place, for a clear message on old configs.
MOVED_KEYS = {"optim.weight_decay": "wd.value"}


def _unknown_key_message(schema: type, full_key: str, source: str, prefix: str = "") -> str:
    parent, _, leaf = full_key.rpartition(".")
    allowed = _keys_at(schema, parent)
    parent, full_key = prefix + parent if parent else prefix.rstrip("."), prefix + full_key
    msg = f"unknown config key '{full_key}' (from {source})."
    if full_key in MOVED_KEYS:
        return msg + f" It moved to '{MOVED_KEYS[full_key]}'."
    near = difflib.get_close_matches(leaf, allowed, n=1, cutoff=0.6)
    if near:
        msg += f" Did you mean '{(parent + '.' if parent else '') + near[0]}'?"
    if allowed:
        msg += f" Keys allowed under '{parent or '<top>'}': {', '.join(allowed)}."
    return msg


def _merge(base, other, source: str, schema: type, prefix: str = ""):
    try:
        return OmegaConf.merge(base, other)
    except ConfigKeyError as e:
        raise ConfigError(_unknown_key_message(schema, str(e.full_key), source, prefix)) from None
    except ValidationError as e:
        raise ConfigError(
            f"bad value for config key '{prefix}{e.full_key}' (from {source}): {e.msg.splitlines()[0]}"
        ) from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"cannot apply {source}: {e}") from None


def parse_overrides(overrides: list[str]) -> list[str]:
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override '{item}' is not of the form key.path=value (e.g. optim.lr=0.05)")
    return overrides


def validate(obj: Any, prefix: str = "") -> None:
    """Check every field's declared choices and range, recursively; raise ConfigError."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            validate(value, key + ".")
            continue
        if "choices" in f.metadata and value not in f.metadata["choices"]:
            allowed = f.metadata["choices"]
            msg = f"bad value for config key '{key}': {value!r}. Allowed: {', '.join(map(str, allowed))}."
            near = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1, cutoff=0.6)
            if near:
                msg += f" Did you mean '{near[0]}'?"
            raise ConfigError(msg)
        if "range" in f.metadata:
            low, high, low_inc, high_inc = f.metadata["range"]
            too_low = low is not None and (value < low if low_inc else value <= low)
            too_high = high is not None and (value > high if high_inc else value >= high)
            if too_low or too_high:
                lo = "(-inf" if low is None else ("[" if low_inc else "(") + str(low)
                hi = "inf)" if high is None else str(high) + ("]" if high_inc else ")")
                raise ConfigError(f"bad value for config key '{key}': {value!r}. Allowed range: {lo}, {hi}.")
    post = getattr(obj, "validate", None)
    if callable(post):
        post()


def load_config(path: Optional[str | os.PathLike] = None, overrides: tuple[str, ...] | list[str] = (), schema: type = RunConfig):
    """Defaults <- YAML preset <- dotted overrides; returns a validated dataclass instance."""
    cfg = OmegaConf.structured(schema)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file '{path}' does not exist (presets live in configs/)")
        try:
            loaded = OmegaConf.load(path)
        except Exception as e:
            raise ConfigError(f"config file '{path}' is not valid YAML: {e}") from None
        cfg = _merge(cfg, loaded, f"config file {path}", schema)
    if overrides:
        cfg = _merge(cfg, OmegaConf.from_dotlist(parse_overrides(list(overrides))), "command-line override", schema)
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(f"config is incomplete or invalid: {e}") from None
    validate(obj)
    return obj


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a whole file so that readers see either the old or the new content, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_resolved(cfg: Any, path: str | os.PathLike) -> None:
    atomic_write_text(path, to_yaml(cfg))
