"""One EdgeConnect training step for each of the four modes, with a correct update order.

The official code stepped the discriminator before the generator's backward pass, which raises
an in-place autograd error on current PyTorch. Here every step is:

1. generator forward(s);
2. discriminator loss on *detached* fakes (real and fake in one forward), backward;
3. discriminator parameters frozen (``requires_grad=False``), generator loss through the
   unwrapped discriminator, backward (no gradient reaches the discriminator);
4. all losses checked finite, then every optimizer steps.

Under DDP each wrapped network runs exactly one forward and one backward per step.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch
from torch import nn

from ec_train.canny import Canny
from ec_train.checkpoints import (MODEL_KEYS, OFFICIAL_FILES, TRAIN_FORMAT, detect_kind, extract_state_dict,
                                  load_into, read_checkpoint)
from ec_train.config import TrainConfig
from ec_train.distributed import DistInfo
from ec_train.errors import CheckpointError, ConfigError, TrainingError
from ec_train.losses import AdversarialLoss, feature_matching_loss, masked_l1, perceptual_loss, style_loss
from ec_train.networks import edge_generator_input, inpaint_generator_input, rgb_to_gray
from ec_train.registry import create_model

EG, IG, ED, ID = "edge_generator", "inpaint_generator", "edge_discriminator", "inpaint_discriminator"
OFFICIAL_DIS_FILES = {ED: "EdgeModel_dis.pth", ID: "InpaintingModel_dis.pth"}


def edge_accuracy(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, threshold: float = 0.5):
    """Edge precision and recall inside the hole (the official metric), as 0-d tensors."""
    labels = (target * mask) > threshold
    selected = (pred * mask) > threshold
    relevant, chosen = labels.sum().float(), selected.sum().float()
    tp = (labels & selected).sum().float()
    if relevant == 0 and chosen == 0:
        one = torch.ones((), device=pred.device)
        return one, one
    return tp / (chosen + 1e-8), tp / (relevant + 1e-8)


def _conv1_channels(sd: dict) -> int | None:
    """Output channels of a discriminator's first conv in a state dict (its width), or None."""
    for name in ("conv1.0.weight_orig", "conv1.0.weight"):
        if name in sd:
            return int(sd[name].shape[0])
    return None


class Trainer:
    """Networks, optimizers, scaler and losses of one run; ``train_step`` does one iteration."""

    def __init__(self, cfg: TrainConfig, device: torch.device, dist: DistInfo | None = None,
                 vgg: nn.Module | None = None):
        self.cfg, self.device, self.dist = cfg, device, dist or DistInfo()
        if cfg.amp == "fp16" and device.type != "cuda":
            raise ConfigError("--amp fp16 needs a CUDA device; use --amp bf16 on CPU")
        torch.manual_seed(cfg.seed)
        self.adversarial = AdversarialLoss(cfg.gan_loss)
        self.models: dict[str, nn.Module] = {}
        for key, part in ((EG, "edge"), (IG, "inpaint"), (ED, "edge_discriminator"), (ID, "inpaint_discriminator")):
            model = create_model(cfg.variant, part)
            if key in (ED, ID):
                model.use_sigmoid = self.adversarial.discriminator_uses_sigmoid
            model = model.to(device)
            if cfg.channels_last:
                model = model.to(memory_format=torch.channels_last)
            self.models[key] = model
        # With --adv-weight 0 the inpaint stage trains on reconstruction alone: its discriminator
        # would not affect the generator, so it is neither run nor updated.
        inpaint_parts = [IG, ID] if cfg.inpaint_adv_weight > 0 else [IG]
        self.trained = ([EG, ED] if cfg.trains_edge else []) + (inpaint_parts if cfg.trains_inpaint else [])
        for key, model in self.models.items():
            model.train(key in self.trained)
            model.requires_grad_(key in self.trained)
        betas = (cfg.beta1, cfg.beta2)
        self.optimizers = {
            key: torch.optim.Adam(self.models[key].parameters(),
                                  lr=cfg.lr * (cfg.d2g_lr if key in (ED, ID) else 1.0), betas=betas)
            for key in self.trained
        }
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
        self.canny = Canny(cfg.sigma, cfg.canny_low, cfg.canny_high).to(device)
        self.vgg = vgg.to(device).eval() if vgg is not None else None
        self.wrapped: dict[str, nn.Module] = dict(self.models)
        self.iteration = 0
        self.edge_weights_loaded = False

    # ---------------------------------------------------------------- setup
    def wrap_ddp(self) -> None:
        """Wrap the trained networks in DistributedDataParallel (call after loading weights)."""
        if not self.dist.enabled:
            return
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        for key in self.trained:
            self.wrapped[key] = DDP(self.models[key], device_ids=ids)

    def load_init(self, sources: list[str]) -> list[str]:
        """Start from existing weights: official files (or a folder of them), bare state dicts or our checkpoints."""
        loaded = []
        for source in sources:
            path = Path(source)
            files = [path / n for n in (*OFFICIAL_FILES.values(), *OFFICIAL_DIS_FILES.values())] if path.is_dir() else [path]
            files = [f for f in files if f.exists()] if path.is_dir() else files
            if not files:
                raise CheckpointError(f"{path} holds none of {', '.join(OFFICIAL_FILES.values())}")
            for f in files:
                obj = read_checkpoint(f)
                kinds = [k for k, v in MODEL_KEYS.items()] if obj.get("format") == TRAIN_FORMAT else [None]
                for kind in kinds:
                    if kind is not None and MODEL_KEYS[kind] not in obj.get("models", {}):
                        continue
                    sd = extract_state_dict(obj, kind, source=str(f))
                    key = MODEL_KEYS[detect_kind(sd)]
                    if key in (ED, ID) and _conv1_channels(sd) != _conv1_channels(self.models[key].state_dict()):
                        loaded.append(f"{key} not loaded from {f}: {_conv1_channels(sd)} channels, this variant "
                                      f"uses {_conv1_channels(self.models[key].state_dict())}; it starts afresh")
                        continue
                    load_into(self.models[key], {k: v.to(self.device) for k, v in sd.items()}, source=str(f))
                    loaded.append(f"{key} <- {f}")
                    self.edge_weights_loaded |= key == EG
        return loaded

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """The checkpoint dict (plain types and tensors only: loads with ``weights_only=True``)."""
        from ec_train import __version__

        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": TRAIN_FORMAT,
            "toolkit_version": __version__,
            "iteration": int(self.iteration),
            "config": self.cfg.to_dict(),
            "models": {k: {n: t.detach().cpu() for n, t in m.state_dict().items()} for k, m in self.models.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scaler": self.scaler.state_dict(),
            "rng": rng,
        }

    def load_state_dict(self, state: dict, source: str = "checkpoint") -> None:
        """Restore everything :meth:`state_dict` saved (for an exact ``--resume``)."""
        if state.get("format") != TRAIN_FORMAT:
            raise CheckpointError(f"{source} is not an ec-train checkpoint (format {state.get('format')!r}); "
                                  "use --init to start from official or other weights")
        saved = state.get("config", {})
        for name in ("mode", "variant", "gan_loss"):
            if saved.get(name) != getattr(self.cfg, name):
                raise CheckpointError(f"{source} was trained with {name}={saved.get(name)!r}, "
                                      f"this run asks for {getattr(self.cfg, name)!r}")
        for key, model in self.models.items():
            if key in (ED, ID) and _conv1_channels(state["models"][key]) != _conv1_channels(model.state_dict()):
                raise CheckpointError(
                    f"{source} has a {_conv1_channels(state['models'][key])}-channel {key.replace('_', ' ')}, "
                    f"this toolkit's {self.cfg.variant} variant uses {_conv1_channels(model.state_dict())} "
                    "channels, so the run cannot be resumed exactly; start from its generators with --init")
            load_into(model, state["models"][key], source=f"{source} [{key}]")
        for key, opt in self.optimizers.items():
            if key not in state.get("optimizers", {}):
                hint = (" (it was trained with --adv-weight 0); start from it with --init"
                        if key == ID else "")
                raise CheckpointError(f"{source} has no optimizer state for {key}{hint}")
            opt.load_state_dict(state["optimizers"][key])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        rng = state.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.iteration = int(state["iteration"])
        self.edge_weights_loaded = True

    # ---------------------------------------------------------------- step
    def autocast(self):
        if self.cfg.amp == "off":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.cfg.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    @torch.no_grad()
    def prepare(self, batch: dict, iteration: int | None = None):
        """Images, gray, Canny edges (computed here, on the training device) and masks of a batch."""
        images = batch["image"].to(self.device, non_blocking=True)
        masks = batch["mask"].to(self.device, non_blocking=True)
        gray = rgb_to_gray(images)
        gen = None
        if self.cfg.sigma == 0:  # random sigma per image, reproducible per iteration
            gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + (iteration or self.iteration))
        edges = self.canny(gray, None, generator=gen)
        return images, gray, edges, masks

    def generate(self, images, gray, edges, masks, train: bool = True):
        """Stage outputs for this mode: ``(edge_out or None, inpaint_out or None, edges fed to stage 2)``."""
        cfg, nets = self.cfg, (self.wrapped if train else self.models)
        e_out = i_out = None
        stage2_edges = edges
        if cfg.mode != "inpaint":
            x = self._layout(edge_generator_input(gray, edges, masks))
            if cfg.mode == "edge-inpaint":
                with torch.no_grad():
                    e_out = self.models[EG](x).detach()
            else:
                e_out = nets[EG](x)
            stage2_edges = e_out * masks + edges * (1 - masks)
        if cfg.trains_inpaint:
            i_out = nets[IG](self._layout(inpaint_generator_input(images, stage2_edges, masks, nets[IG])))
        return e_out, i_out, stage2_edges

    def train_step(self, batch: dict) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        """One iteration; returns (loss values, tensors for sample grids). Raises TrainingError on NaN/inf."""
        cfg = self.cfg
        images, gray, edges, masks = self.prepare(batch)
        n = images.shape[0]
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        terms: dict[str, torch.Tensor] = {}
        with self.autocast():
            e_out, i_out, stage2_edges = self.generate(images, gray, edges, masks)
            # Discriminators on detached fakes (real and fake batched in one forward).
            if cfg.trains_edge:
                real = torch.cat([gray, edges], 1)
                out, feats = self.wrapped[ED](self._layout(torch.cat([real, torch.cat([gray, e_out.detach()], 1)])))
                real_feats = [f[:n].detach() for f in feats]
                terms["e_dis"] = (self.adversarial(out[:n], True, True) + self.adversarial(out[n:], False, True)) / 2
            if ID in self.trained:
                out, _ = self.wrapped[ID](self._layout(torch.cat([images, i_out.detach()])))
                terms["i_dis"] = (self.adversarial(out[:n], True, True) + self.adversarial(out[n:], False, True)) / 2
        if "e_dis" in terms or "i_dis" in terms:
            dis_loss = sum(terms[k] for k in ("e_dis", "i_dis") if k in terms)
            self.scaler.scale(dis_loss).backward()

        frozen = [self.models[k] for k in (ED, ID) if k in self.trained]
        for d in frozen:
            d.requires_grad_(False)
        try:
            with self.autocast():
                gen_loss = images.new_zeros((), dtype=torch.float32)
                if cfg.trains_edge:
                    out, fake_feats = self.models[ED](self._layout(torch.cat([gray, e_out], 1)))
                    terms["e_adv"] = self.adversarial(out, True, False)
                    terms["e_fm"] = feature_matching_loss(fake_feats, real_feats) * cfg.fm_weight
                    gen_loss = gen_loss + terms["e_adv"] + terms["e_fm"]
                if cfg.trains_inpaint:
                    if ID in self.trained:
                        out, _ = self.models[ID](i_out)
                        terms["i_adv"] = self.adversarial(out, True, False) * cfg.inpaint_adv_weight
                        gen_loss = gen_loss + terms["i_adv"]
                    terms["i_l1"] = masked_l1(i_out, images, masks) * cfg.l1_weight
                    gen_loss = gen_loss + terms["i_l1"]
                    if self.vgg is not None:
                        with torch.no_grad():
                            f_img, f_img_m = self.vgg(images), self.vgg(images * masks)
                        terms["i_content"] = perceptual_loss(self.vgg(i_out), f_img) * cfg.content_weight
                        terms["i_style"] = style_loss(self.vgg(i_out * masks), f_img_m) * cfg.style_weight
                        gen_loss = gen_loss + terms["i_content"] + terms["i_style"]
            self.scaler.scale(gen_loss).backward()
        finally:
            for d in frozen:
                d.requires_grad_(True)

        names = list(terms)
        values = torch.stack([terms[k].detach().float() for k in names]).tolist()
        logs = dict(zip(names, values))
        bad = [k for k, v in logs.items() if v != v or v in (float("inf"), float("-inf"))]
        if bad:
            raise TrainingError(f"loss became non-finite at iteration {self.iteration + 1} "
                                f"({', '.join(f'{k}={logs[k]}' for k in bad)}); no update was applied. "
                                "Lower --lr, check the data, or turn --amp off.")
        for opt in self.optimizers.values():
            self.scaler.step(opt)
        self.scaler.update()
        self.iteration += 1
        if e_out is not None:
            p, r = edge_accuracy(e_out.detach(), edges, masks, cfg.edge_threshold)
            logs["precision"], logs["recall"] = float(p), float(r)
        vis = {"images": images, "masks": masks, "edges": edges, "stage2_edges": stage2_edges.detach(),
               "edge_out": None if e_out is None else e_out.detach(),
               "inpaint_out": None if i_out is None else i_out.detach()}
        return logs, vis

    def warn_if_edge_untrained(self) -> None:
        if self.cfg.mode == "edge-inpaint" and not self.edge_weights_loaded:
            warnings.warn("edge-inpaint mode with an untrained edge model: pass --init with edge weights "
                          "(an edge-mode checkpoint or EdgeModel_gen.pth)", stacklevel=2)
