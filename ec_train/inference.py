"""The reference inpainting pipeline in eager PyTorch: the way the official code runs a model.

It is the baseline ``ec-bench`` measures every other backend against and the reference the
runtime's accuracy tests compare with. Canny runs either on the host with skimage (the official
way) or as the tensor-op :class:`~ec_train.canny.Canny`.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
from torch import nn

from ec_train.networks import edge_generator_input, inpaint_generator_input, rgb_to_gray

STAGES = ("host_pre", "canny", "edge", "inpaint", "host_post")


def _pad_amount(n: int, multiple: int = 4) -> int:
    return (-n) % multiple


class ReferencePipeline:
    """image (uint8 HxWx3) + mask (nonzero = hole) -> inpainted uint8 image, all in torch fp32.

    ``canny`` is ``"skimage"`` (host, ``skimage.feature.canny(gray, sigma, mask=known)`` per image)
    or a torch module called as ``canny(gray, known_mask)``. ``merge`` is ``"training"``
    (``edge*m + canny*(1-m)``) or ``"official"`` (the raw stage-1 map, as the official test script fed).
    """

    def __init__(self, edge: nn.Module, inpaint: nn.Module, canny: str | nn.Module = "skimage",
                 sigma: float = 2.0, merge: str = "training", device: str | torch.device = "cpu"):
        if merge not in ("training", "official"):
            raise ValueError(f"merge must be 'training' or 'official', got {merge!r}")
        self.device = torch.device(device)
        self.edge = edge.eval().to(self.device)
        self.inpaint = inpaint.eval().to(self.device)
        self.canny = canny if isinstance(canny, str) else canny.eval().to(self.device)
        self.sigma = sigma
        self.merge = merge

    def _canny(self, gray: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        if self.canny == "skimage":
            from skimage.feature import canny

            g = gray.cpu().numpy()[:, 0].astype(np.float64)
            k = known.cpu().numpy()[:, 0].astype(bool)
            edges = np.stack([canny(g[i], sigma=self.sigma, mask=k[i]) for i in range(g.shape[0])])
            return torch.from_numpy(edges.astype(np.float32))[:, None].to(self.device)
        return self.canny(gray, known)

    def run_batch(self, images: np.ndarray, masks: np.ndarray,
                  timer: Callable[[str, float], None] | None = None) -> np.ndarray:
        """Inpaint a batch: images (N,H,W,3) uint8, masks (N,H,W) -> (N,H,W,3) uint8.

        ``timer(stage, seconds)`` is called once per stage in :data:`STAGES` when given.
        """
        def tick(stage, start):
            now = time.perf_counter()
            if timer is not None:
                timer(stage, now - start)
            return now

        t = time.perf_counter()
        n, h, w = masks.shape
        ph, pw = _pad_amount(h), _pad_amount(w)
        image = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)
        mask = torch.from_numpy((np.asarray(masks) != 0).astype(np.float32))[:, None]
        if ph or pw:
            image = nn.functional.pad(image, (0, pw, 0, ph), mode="reflect")
            mask = nn.functional.pad(mask, (0, pw, 0, ph), mode="reflect")
        image, mask = image.to(self.device), mask.to(self.device)
        gray = rgb_to_gray(image)
        t = tick("host_pre", t)
        with torch.inference_mode():
            edges = self._canny(gray, 1 - mask)
            t = tick("canny", t)
            raw = self.edge(edge_generator_input(gray, edges, mask))
            fed = raw if self.merge == "official" else raw * mask + edges * (1 - mask)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            t = tick("edge", t)
            out = self.inpaint(inpaint_generator_input(image, fed, mask, self.inpaint))
            merged = out * mask + image * (1 - mask)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            t = tick("inpaint", t)
        result = merged[:, :, :h, :w].permute(0, 2, 3, 1).mul(255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        tick("host_post", t)
        return result

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Inpaint one image (H,W,3) uint8 with its mask (H,W)."""
        return self.run_batch(image[None], np.asarray(mask)[None])[0]
