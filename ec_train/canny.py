"""Canny edge detection as batched tensor ops that reproduce ``skimage.feature.canny``.

EdgeConnect feeds its networks ``skimage.feature.canny(gray, sigma=2, mask=known_region)``. This module
computes the same edges with torch ops only, so one implementation trains on the GPU and traces into
ONNX / TensorRT. The steps follow skimage exactly:

1. Smoothing: ``gaussian_filter(gray * known)`` / (``gaussian_filter(known)`` + eps), zero padding,
   kernel radius ``int(4 * sigma + 0.5)`` (scipy's ``truncate=4.0``), done as two 1-D convolutions.
2. Gradients: ``scipy.ndimage.sobel`` along rows (``isobel``) and columns (``jsobel``); scipy's
   ``reflect`` border equals replicate padding for a 3x3 kernel. Magnitude is the L2 norm.
3. Border: the known mask eroded by a 3x3 square with border value 0.
4. Non-maximum suppression with bilinear interpolation between the axial and the diagonal neighbour
   of the gradient octant, keeping ``magnitude >= low`` (the comparisons of skimage's Cython kernel).
5. Hysteresis: skimage labels 8-connected components of the NMS survivors and keeps components that
   contain a pixel ``>= high``. A graph cannot label components, so strong pixels are grown through
   weak ones by ``iterations`` rounds of 3x3 max-pool dilation (one pixel of chain length per round).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ec_train.errors import EcError

#: Random training sigmas (official config ``SIGMA: 0``) are integers drawn from this range.
RANDOM_SIGMAS = (1, 2, 3, 4)
#: Hysteresis rounds used when ``iterations`` is not given; chosen from the measured F1 curve
#: (see :class:`Canny` and ``benchmarks/results/canny_agreement.md``).
DEFAULT_ITERATIONS = 160
MIN_SIZE = 16
#: In eager mode hysteresis stops early once a round changes nothing; checked every this many rounds.
CONVERGENCE_CHECK_EVERY = 16


class CannyInputError(EcError, ValueError):
    """The tensors handed to :class:`Canny` do not have the expected shape or dtype."""


def gaussian_kernel_1d(sigma: float, radius: int | None = None) -> torch.Tensor:
    """scipy's normalised 1-D Gaussian (``truncate=4.0``) as float64, optionally zero-padded to ``radius``."""
    own_radius = int(4.0 * float(sigma) + 0.5)
    radius = own_radius if radius is None else radius
    x = torch.arange(-own_radius, own_radius + 1, dtype=torch.float64)
    phi = torch.exp(-0.5 / (float(sigma) ** 2) * x * x)
    phi = phi / phi.sum()
    pad = radius - own_radius
    return F.pad(phi, (pad, pad)) if pad > 0 else phi


def _sobel_weights() -> torch.Tensor:
    derivative = torch.tensor([-1.0, 0.0, 1.0])
    smoothing = torch.tensor([1.0, 2.0, 1.0])
    isobel = derivative[:, None] * smoothing[None, :]  # d/d(row), as scipy.ndimage.sobel(axis=0)
    jsobel = smoothing[:, None] * derivative[None, :]  # d/d(column), axis=1
    return torch.stack([isobel, jsobel])[:, None]  # (2, 1, 3, 3)


def _shift(padded: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``out[y, x] = original[y + dy, x + dx]`` from a 1-px padded map (negative-end slices keep H, W dynamic)."""
    def window(offset: int) -> slice:
        start = 1 + offset
        end = offset - 1
        return slice(start, end if end != 0 else None)
    return padded[:, :, window(dy), window(dx)]


def _smooth(gray: torch.Tensor, known: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Mask-normalised Gaussian smoothing. ``kernels`` is (K,) shared by all images or (N, K) per image."""
    stacked = torch.cat([gray * known, known], dim=1)  # (N, 2, H, W)
    radius = (kernels.shape[-1] - 1) // 2
    if kernels.dim() == 1:
        weight = kernels.to(stacked.dtype).reshape(1, 1, -1, 1).expand(2, 1, -1, 1)
        rows = F.conv2d(stacked, weight, padding=(radius, 0), groups=2)
        both = F.conv2d(rows, weight.transpose(2, 3), padding=(0, radius), groups=2)
    else:
        n = stacked.shape[0]
        weight = kernels.to(stacked.dtype).repeat_interleave(2, dim=0).reshape(2 * n, 1, -1, 1)
        flat = stacked.reshape(1, 2 * n, stacked.shape[2], stacked.shape[3])
        rows = F.conv2d(flat, weight, padding=(radius, 0), groups=2 * n)
        both = F.conv2d(rows, weight.transpose(2, 3), padding=(0, radius), groups=2 * n).reshape_as(stacked)
    image, bleed = both[:, :1], both[:, 1:]
    return image / (bleed + torch.finfo(torch.float64).eps)


def _non_maximum_suppression(isobel: torch.Tensor, jsobel: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """True where ``magnitude`` is a bilinear-interpolated local maximum along the gradient (skimage's octants)."""
    padded = F.pad(magnitude, (1, 1, 1, 1))
    abs_i, abs_j = isobel.abs(), jsobel.abs()
    same_sign = (isobel > 0) == (jsobel > 0)  # skimage's cond1; otherwise cond2
    # cond1 uses the row axis when |i| > |j|, cond2 when |i| >= |j|.
    row_major = (same_sign & (abs_i > abs_j)) | (~same_sign & (abs_i >= abs_j))
    weight = torch.minimum(abs_i, abs_j) / torch.maximum(abs_i, abs_j).clamp_min(torch.finfo(magnitude.dtype).tiny)

    # Selections as exact {0,1} blends: ONNX Runtime's Where is several times slower than Mul + Add.
    same, other = same_sign.to(magnitude.dtype), (~same_sign).to(magnitude.dtype)
    rows, columns = row_major.to(magnitude.dtype), (~row_major).to(magnitude.dtype)
    axial_plus = rows * (same * _shift(padded, 1, 0) + other * _shift(padded, -1, 0)) + columns * _shift(padded, 0, 1)
    axial_minus = rows * (same * _shift(padded, -1, 0) + other * _shift(padded, 1, 0)) + columns * _shift(padded, 0, -1)
    diagonal_plus = same * _shift(padded, 1, 1) + other * _shift(padded, -1, 1)
    diagonal_minus = same * _shift(padded, -1, -1) + other * _shift(padded, 1, -1)

    plus = diagonal_plus * weight + axial_plus * (1.0 - weight)
    minus = diagonal_minus * weight + axial_minus * (1.0 - weight)
    return (plus <= magnitude) & (minus <= magnitude)


def canny_edges(gray: torch.Tensor, known: torch.Tensor, kernels: torch.Tensor, low: float, high: float,
                iterations: int) -> torch.Tensor:
    """The unchecked core of :class:`Canny`: float (N,1,H,W) gray and binary known mask -> {0,1} edges.

    ``kernels`` is one 1-D Gaussian (K,) or one per image (N, K). This is what ONNX export traces.
    """
    smoothed = _smooth(gray, known, kernels)
    gradients = F.conv2d(F.pad(smoothed, (1, 1, 1, 1), mode="replicate"), _sobel_weights().to(smoothed))
    isobel, jsobel = gradients[:, :1], gradients[:, 1:]
    magnitude = torch.sqrt(isobel * isobel + jsobel * jsobel)

    eroded = 1.0 - F.max_pool2d(F.pad(1.0 - known, (1, 1, 1, 1), value=1.0), 3, stride=1)
    # skimage compares against a C float threshold; float32(low) is the same number here.
    candidates = (eroded > 0.5) & (magnitude >= low) & _non_maximum_suppression(isobel, jsobel, magnitude)
    weak = candidates.to(gray.dtype)
    strong = weak * (magnitude >= high).to(gray.dtype)
    tracing = torch.jit.is_tracing()
    for round_index in range(iterations):
        grown = F.max_pool2d(strong, 3, stride=1, padding=1) * weak
        # Eagerly (training) stop at the fixed point; a traced graph keeps every round.
        if not tracing and round_index % CONVERGENCE_CHECK_EVERY == CONVERGENCE_CHECK_EVERY - 1 \
                and torch.equal(grown, strong):
            return grown
        strong = grown
    return strong


class Canny(nn.Module):
    """skimage-compatible Canny edges for a batch of gray images, on any device.

    ``forward(gray, known_mask=None)``: ``gray`` is N x 1 x H x W float in [0, 1] (H, W >= 16) and
    ``known_mask`` an optional N x 1 x H x W mask with 1 = known pixel (binarised at 0.5; holes are
    ignored by the smoothing and never carry edges, exactly like ``skimage.feature.canny(mask=...)``).
    Returns N x 1 x H x W float edges in {0, 1}.

    ``sigma``: the Gaussian's standard deviation; ``0`` draws an integer sigma in 1..4 per image (the
    official training option; pass a ``torch.Generator`` to ``forward`` for reproducibility), ``-1``
    returns all-zero edges. ``low`` / ``high`` are the hysteresis thresholds on the gradient magnitude
    (skimage's defaults for float images).

    ``iterations``: rounds of 3x3 dilation that grow strong edges through weak ones. skimage links
    whole 8-connected components, so exact agreement needs as many rounds as the longest weak run
    hanging off a strong pixel, which grows with the image size. Measured with sigma 2 on eight
    bundled photos, with and without a free-form hole (``python -m benchmarks.canny_agreement``,
    mean exact-pixel F1 vs skimage, no hole / hole):

    ======  ===============  ===============
    rounds  256 x 256        512 x 512
    ======  ===============  ===============
    0       0.8514 / 0.8514  0.8217 / 0.8262
    16      0.9879 / 0.9909  0.9692 / 0.9762
    32      0.9973 / 0.9993  0.9857 / 0.9912
    64      1.0000 / 1.0000  0.9952 / 0.9984
    96      1.0000 / 1.0000  0.9989 / 0.9998
    128     1.0000 / 1.0000  0.99999 / 0.99999 (flat from here; the rest is float32 vs float64)
    ======  ===============  ===============

    At 1024 x 1024 (astronaut, chelsea, retina, immunohistochemistry, no hole) 160 rounds give
    F1 0.9990 / 1.0 / 0.978 / 1.0 and 320 rounds >= 0.99999 for all. The default,
    :data:`DEFAULT_ITERATIONS` = 160, is the 512 x 512 convergence point plus 25 % margin: F1 >= 0.9999 at
    the sizes EdgeConnect trains and runs at (256, 512) and >= 0.97 at 1024. Each round is one
    MaxPool and one Mul; in ONNX Runtime on the CPU the whole model costs about 2-3 % of one
    InpaintGenerator forward at 512 x 512 (``benchmarks/results/canny_agreement.md``). In eager mode
    the rounds stop early at the fixed point, so small training images pay only for what they need.
    Export with more rounds (``export_canny(iterations=...)``) for images much larger than 512.
    """

    def __init__(self, sigma: float = 2.0, low: float = 0.1, high: float = 0.2,
                 iterations: int = DEFAULT_ITERATIONS):
        super().__init__()
        if sigma < 0 and sigma != -1:
            raise CannyInputError(f"sigma must be > 0, 0 (random 1..4 per image) or -1 (no edges), got {sigma}")
        if not 0 <= low <= high:
            raise CannyInputError(f"thresholds must satisfy 0 <= low <= high, got low={low}, high={high}")
        if int(iterations) != iterations or iterations < 0:
            raise CannyInputError(f"iterations must be a non-negative integer, got {iterations}")
        self.sigma = float(sigma)
        self.low = float(low)
        self.high = float(high)
        self.iterations = int(iterations)
        if self.sigma > 0:
            self.register_buffer("kernel", gaussian_kernel_1d(self.sigma).float(), persistent=False)
        else:
            self.kernel = None

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, low={self.low}, high={self.high}, iterations={self.iterations}"

    def forward(self, gray: torch.Tensor, known_mask: torch.Tensor | None = None, *,
                generator: torch.Generator | None = None) -> torch.Tensor:
        check_inputs(gray, known_mask)
        if self.sigma == -1:
            return torch.zeros_like(gray)
        # float32 even under autocast: the smoothing's bleed normalisation needs its range.
        with torch.autocast(device_type=gray.device.type, enabled=False):
            gray32 = gray.float()
            known = torch.ones_like(gray32) if known_mask is None else (known_mask > 0.5).float()
            if self.sigma == 0:
                kernels = random_sigma_kernels(gray.shape[0], generator).to(gray.device)
            else:
                kernels = self.kernel.to(gray.device)
            return canny_edges(gray32, known, kernels, self.low, self.high, self.iterations).to(gray.dtype)


def random_sigma_kernels(batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(batch, K) Gaussian kernels for integer sigmas drawn uniformly from :data:`RANDOM_SIGMAS`."""
    radius = int(4.0 * max(RANDOM_SIGMAS) + 0.5)
    table = torch.stack([gaussian_kernel_1d(s, radius) for s in RANDOM_SIGMAS]).float()
    device = generator.device if generator is not None else torch.device("cpu")
    index = torch.randint(0, len(RANDOM_SIGMAS), (batch,), generator=generator, device=device)
    return table[index.cpu()]


def check_inputs(gray: torch.Tensor, known_mask: torch.Tensor | None = None) -> None:
    """Raise :class:`CannyInputError` (a ``ValueError``) unless ``gray`` is float N x 1 x H x W with H, W >= 16."""
    expected = f"a float tensor of shape (N, 1, H, W) with H, W >= {MIN_SIZE}"
    if not isinstance(gray, torch.Tensor):
        raise CannyInputError(f"gray must be {expected}, got {type(gray).__name__}")
    if gray.dim() != 4 or gray.shape[1] != 1:
        raise CannyInputError(f"gray must be {expected}, got shape {tuple(gray.shape)}")
    if not gray.is_floating_point():
        raise CannyInputError(f"gray must be {expected}, got dtype {gray.dtype}")
    if gray.shape[2] < MIN_SIZE or gray.shape[3] < MIN_SIZE:
        raise CannyInputError(f"gray must be {expected}, got shape {tuple(gray.shape)}")
    if known_mask is not None:
        if not isinstance(known_mask, torch.Tensor) or known_mask.shape != gray.shape:
            got = tuple(known_mask.shape) if isinstance(known_mask, torch.Tensor) else type(known_mask).__name__
            raise CannyInputError(f"known_mask must have the shape of gray {tuple(gray.shape)} "
                                  f"(N, 1, H, W; 1 = known), got {got}")
        if known_mask.device != gray.device:
            raise CannyInputError(f"known_mask is on {known_mask.device} but gray is on {gray.device}")


__all__ = ["Canny", "CannyInputError", "DEFAULT_ITERATIONS", "RANDOM_SIGMAS", "canny_edges", "check_inputs",
           "gaussian_kernel_1d", "random_sigma_kernels"]
