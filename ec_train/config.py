"""The training configuration: one dataclass, readable from the official ``config.yml`` key names.

Precedence: dataclass defaults < ``--config`` YAML < command-line flags. The resolved
configuration is written beside the outputs (``config.yml``) with our key names; that file can
be passed back with ``--config``.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ec_train.errors import ConfigError

MODES = ("edge", "inpaint", "edge-inpaint", "joint")
OFFICIAL_MODES = {1: "edge", 2: "inpaint", 3: "edge-inpaint", 4: "joint"}
AMP_MODES = ("off", "bf16", "fp16")

# Official config.yml key -> our field name.
OFFICIAL_KEYS = {
    "MODEL": "mode", "SEED": "seed", "LR": "lr", "D2G_LR": "d2g_lr", "BETA1": "beta1", "BETA2": "beta2",
    "BATCH_SIZE": "batch", "INPUT_SIZE": "size", "SIGMA": "sigma", "MAX_ITERS": "iters",
    "EDGE_THRESHOLD": "edge_threshold", "L1_LOSS_WEIGHT": "l1_weight", "FM_LOSS_WEIGHT": "fm_weight",
    "STYLE_LOSS_WEIGHT": "style_weight", "CONTENT_LOSS_WEIGHT": "content_weight",
    "INPAINT_ADV_LOSS_WEIGHT": "inpaint_adv_weight", "GAN_LOSS": "gan_loss",
    "SAVE_INTERVAL": "save_every", "SAMPLE_INTERVAL": "sample_every", "SAMPLE_SIZE": "sample_size",
    "EVAL_INTERVAL": "eval_every", "LOG_INTERVAL": "log_every",
    "TRAIN_FLIST": "data", "VAL_FLIST": "val", "TRAIN_MASK_FLIST": "masks",
}
# Official keys that have no meaning here (devices, test-time settings...): accepted silently.
IGNORED_OFFICIAL_KEYS = {"MODE", "MASK", "NMS", "GPU", "DEBUG", "VERBOSE", "EDGE", "TEST_FLIST", "TEST_EDGE_FLIST",
                         "TEST_MASK_FLIST", "TRAIN_EDGE_FLIST", "VAL_EDGE_FLIST", "VAL_MASK_FLIST", "GAN_POOL_SIZE"}


@dataclass
class TrainConfig:
    """Everything that defines a training run (the official recipe's defaults)."""

    mode: str = "edge"
    data: str | None = None
    val: str | None = None
    masks: str | None = None
    mask_kind: str = "mixed"
    mask_invert: bool = False
    mask_threshold: float = 0.5
    hole_ratio: tuple[float, float] = (0.1, 0.5)
    out: str = "runs/ec-train"
    variant: str = "edgeconnect"
    size: int = 256
    batch: int = 8
    iters: int = 2_000_000
    lr: float = 1e-4
    d2g_lr: float = 0.1
    beta1: float = 0.0
    beta2: float = 0.9
    gan_loss: str = "nsgan"
    sigma: float = 2.0
    canny_low: float = 0.1
    canny_high: float = 0.2
    edge_threshold: float = 0.5
    l1_weight: float = 1.0
    fm_weight: float = 10.0
    style_weight: float = 250.0
    content_weight: float = 0.1
    inpaint_adv_weight: float = 0.1
    device: str = "auto"
    amp: str = "off"
    channels_last: bool = False
    seed: int = 10
    workers: int = 2
    vgg_weights: str | None = None
    init: list[str] = field(default_factory=list)
    save_every: int = 1000
    keep_last: int = 3
    eval_every: int = 0
    sample_every: int = 1000
    sample_size: int = 4
    log_every: int = 10
    val_max: int = 64
    export_official: str | None = None
    progress: bool = True

    def validate(self) -> "TrainConfig":
        """Check values a user can get wrong; raises :class:`ConfigError` naming the option."""
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; expected one of {', '.join(MODES)}")
        if self.size <= 0 or self.size % 4:
            raise ConfigError(f"--size must be a positive multiple of 4 (two stride-2 stages), got {self.size}")
        if self.batch <= 0:
            raise ConfigError(f"--batch must be positive, got {self.batch}")
        if self.iters < 0:
            raise ConfigError(f"--iters must be >= 0, got {self.iters}")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"--amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        if self.gan_loss not in ("nsgan", "lsgan", "hinge"):
            raise ConfigError(f"--gan-loss must be nsgan, lsgan or hinge, got {self.gan_loss!r}")
        if self.keep_last < 1:
            raise ConfigError(f"--keep-last must be >= 1, got {self.keep_last}")
        if self.data is None:
            raise ConfigError("no training data: pass --data DIR|FLIST (or TRAIN_FLIST in the YAML)")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain python types only (lists, not tuples), for YAML and ``torch.load(weights_only=True)``."""
        d = dataclasses.asdict(self)
        d["hole_ratio"] = list(self.hole_ratio)
        d["init"] = list(self.init)
        return d

    @property
    def trains_edge(self) -> bool:
        return self.mode in ("edge", "joint")

    @property
    def trains_inpaint(self) -> bool:
        return self.mode != "edge"


def _convert(name: str, value: Any) -> Any:
    if name == "mode" and isinstance(value, int):
        if value not in OFFICIAL_MODES:
            raise ConfigError(f"MODEL must be 1-4 (edge, inpaint, edge-inpaint, joint), got {value}")
        return OFFICIAL_MODES[value]
    if name == "gan_loss" and isinstance(value, str):
        return value.lower()
    if name == "hole_ratio":
        return tuple(float(v) for v in value)
    if name == "init" and isinstance(value, str):
        return [value]
    return value


def config_from_mapping(mapping: dict[str, Any], base: TrainConfig | None = None, source: str = "config") -> TrainConfig:
    """Apply a mapping with official (``LR``) or our (``lr``) key names on top of ``base``."""
    cfg = dataclasses.replace(base) if base is not None else TrainConfig()
    known = {f.name for f in fields(TrainConfig)}
    for key, value in mapping.items():
        name = OFFICIAL_KEYS.get(key, key)
        if key in IGNORED_OFFICIAL_KEYS:
            continue
        if name not in known:
            warnings.warn(f"{source}: ignoring unknown key {key!r}", stacklevel=2)
            continue
        setattr(cfg, name, _convert(name, value))
    return cfg


def load_yaml_config(path: str | Path, base: TrainConfig | None = None) -> TrainConfig:
    """Read a YAML file (official ``config.yml`` or one we wrote) into a :class:`TrainConfig`."""
    import yaml

    path = Path(path)
    try:
        mapping = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    if not isinstance(mapping, dict):
        raise ConfigError(f"{path} must hold a mapping of keys to values")
    return config_from_mapping(mapping, base, source=str(path))


def write_yaml_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write the resolved configuration (our key names) so a run can be reproduced with ``--config``."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return path
