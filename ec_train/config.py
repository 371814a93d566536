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

VARIANT_NAMES = ("edgeconnect", "lite", "lite-fill")  # the keys of ec_train.registry.VARIANTS

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
        """Check every value's type and range; raises :class:`ConfigError` naming the option.

        Runs before any work (and before torch loads), for values from the command line and
        from a ``--config`` YAML file alike.
        """
        for f in fields(self):
            setattr(self, f.name, check_value(f.name, getattr(self, f.name), option_name(f.name)))
        if self.canny_low > self.canny_high:
            raise ConfigError(f"canny_low ({self.canny_low}) must not exceed canny_high ({self.canny_high})")
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


# field -> (kind, rule): kinds int/float/bool/str/optstr/choice/list/pair; rule checked by _RULES.
_INT_RULES = {
    "size": (32, 4096, 4), "batch": (1, 1024, None), "iters": (0, 10**10, None), "workers": (0, 256, None),
    "seed": (0, 2**32 - 1, None), "save_every": (0, 10**10, None), "keep_last": (1, 10**6, None),
    "eval_every": (0, 10**10, None), "sample_every": (0, 10**10, None), "sample_size": (1, 64, None),
    "log_every": (0, 10**10, None), "val_max": (1, 10**6, None),
}
# (low, high, low_open, high_open)
_FLOAT_RULES = {
    "lr": (0, 1, True, False), "d2g_lr": (0, 100, True, False), "beta1": (0, 1, False, True),
    "beta2": (0, 1, False, True), "canny_low": (0, 1e6, False, False), "canny_high": (0, 1e6, False, False),
    "edge_threshold": (0, 1, True, True), "mask_threshold": (0, 1, False, False),
    "l1_weight": (0, 1e6, False, False), "fm_weight": (0, 1e6, False, False), "style_weight": (0, 1e6, False, False),
    "content_weight": (0, 1e6, False, False), "inpaint_adv_weight": (0, 1e6, False, False),
}
_CHOICES = {
    "mode": MODES, "mask_kind": ("irregular", "block", "half", "mixed"), "variant": VARIANT_NAMES,
    "gan_loss": ("nsgan", "lsgan", "hinge"), "amp": AMP_MODES,
}
_BOOLS = ("mask_invert", "channels_last", "progress")
_STRINGS = ("out",)
_OPTIONAL_STRINGS = ("data", "val", "masks", "vgg_weights", "export_official")
# Config fields that ec-train also takes as a flag (the rest are --config keys only).
CLI_FLAGS = {
    "data": "--data", "val": "--val", "masks": "--masks", "mask_kind": "--mask-kind", "mask_invert": "--mask-invert",
    "out": "--out", "size": "--size", "batch": "--batch", "iters": "--iters", "lr": "--lr", "gan_loss": "--gan-loss",
    "sigma": "--sigma", "device": "--device", "amp": "--amp", "channels_last": "--channels-last",
    "vgg_weights": "--vgg-weights", "seed": "--seed", "variant": "--variant", "save_every": "--save-every",
    "keep_last": "--keep-last", "eval_every": "--eval-every", "sample_every": "--sample-every",
    "log_every": "--log-every", "export_official": "--export-official", "workers": "--workers",
    "progress": "--progress", "l1_weight": "--l1-weight", "inpaint_adv_weight": "--adv-weight",
    "fm_weight": "--fm-weight",
}


def option_name(name: str) -> str:
    """How a user sets config field ``name``: its flag (``keep_last`` -> ``--keep-last``), else the
    ``--config`` key (``config key d2g_lr``)."""
    return CLI_FLAGS.get(name, f"config key {name}")


def _describe(value: Any) -> str:
    return repr(value) if not isinstance(value, str) else repr(value[:80])


def _number(value: Any, integer: bool) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if integer else isinstance(value, (int, float))


def check_value(name: str, value: Any, label: str) -> Any:
    """``value`` for config field ``name`` if its type and range are right (ints widened to float);
    else :class:`ConfigError` "``label`` must be ..., got ...". Unknown fields pass unchanged."""
    import math

    def bad(rule: str) -> ConfigError:
        return ConfigError(f"{label} must be {rule}, got {_describe(value)}")

    if name in _INT_RULES:
        low, high, multiple = _INT_RULES[name]
        rule = f"an integer from {low} to {high}" + (f" and a multiple of {multiple}" if multiple else "")
        if isinstance(value, float) and value.is_integer() and not isinstance(value, bool):
            value = int(value)
        if not _number(value, True) or not low <= value <= high or (multiple and value % multiple):
            raise bad(rule)
        return value
    if name in _FLOAT_RULES:
        low, high, low_open, high_open = _FLOAT_RULES[name]
        rule = f"a number {'>' if low_open else '>='} {low:g} and {'<' if high_open else '<='} {high:g}"
        if not _number(value, False) or not math.isfinite(value):
            raise bad(rule)
        if value < low or value > high or (low_open and value == low) or (high_open and value == high):
            raise bad(rule)
        return float(value)
    if name == "sigma":
        if not _number(value, False) or not math.isfinite(value) or not (value in (-1, 0) or 0 < value <= 32):
            raise bad("-1 (no edges), 0 (random 1-4 per image) or a Canny sigma in (0, 32]")
        return float(value)
    if name in _CHOICES:
        if not isinstance(value, str) or value not in _CHOICES[name]:
            raise bad(f"one of {', '.join(_CHOICES[name])}")
        return value
    if name == "device":
        if not isinstance(value, str) or not (value in ("auto", "cpu", "cuda") or
                                              (value.startswith("cuda:") and value[5:].isdigit())):
            raise bad("auto, cpu, cuda or cuda:N")
        return value
    if name in _BOOLS:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if name in _STRINGS or name in _OPTIONAL_STRINGS:
        if value is None and name in _OPTIONAL_STRINGS:
            return value
        if not isinstance(value, str) or not value.strip():
            raise bad("a path (a non-empty string)")
        return value
    if name == "hole_ratio":
        ok = (isinstance(value, (list, tuple)) and len(value) == 2 and all(_number(v, False) for v in value)
              and 0 < value[0] <= value[1] <= 1)
        if not ok:
            raise bad("two numbers [low, high] with 0 < low <= high <= 1")
        return (float(value[0]), float(value[1]))
    if name == "init":
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
            raise bad("a list of checkpoint paths")
        return list(value)
    return value


def _convert(name: str, value: Any, label: str = "MODEL") -> Any:
    if name == "mode" and isinstance(value, int) and not isinstance(value, bool):
        if value not in OFFICIAL_MODES:
            raise ConfigError(f"{label} must be 1-4 (edge, inpaint, edge-inpaint, joint), got {value}")
        return OFFICIAL_MODES[value]
    if name == "gan_loss" and isinstance(value, str):
        return value.lower()
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
        flag = CLI_FLAGS.get(name)
        label = f"{source}: {key}" + (f" ({flag})" if flag and key != flag[2:] else "")
        setattr(cfg, name, check_value(name, _convert(name, value, label), label))
    return cfg


def load_yaml_config(path: str | Path, base: TrainConfig | None = None) -> TrainConfig:
    """Read a YAML file (official ``config.yml`` or one we wrote) into a :class:`TrainConfig`."""
    import yaml

    path = Path(path)
    try:
        mapping = yaml.safe_load(path.read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"cannot read config file {path}: {detail}") from None
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
