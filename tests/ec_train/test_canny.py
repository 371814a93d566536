"""The tensor-op Canny against skimage.feature.canny, its training options and its input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ec_train.canny import Canny, CannyInputError, random_sigma_kernels
from ec_train.errors import EcError
from tests.helpers import photo_and_mask

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "retina")
SIZE = 128


def _f1(pred: np.ndarray, ref: np.ndarray) -> float:
    tp = float((pred & ref).sum())
    return 2 * tp / max(float(pred.sum() + ref.sum()), 1.0)


@pytest.fixture(scope="module")
def photos():
    """(gray float64 (B,H,W), known uint8 (B,H,W)) for the test photos."""
    from skimage.color import rgb2gray

    grays, knowns = [], []
    for seed, name in enumerate(PHOTOS):
        img, hole = photo_and_mask(name, SIZE, seed=seed)
        grays.append(rgb2gray(img))
        knowns.append(1 - hole)
    return np.stack(grays), np.stack(knowns).astype(np.uint8)


def _torch(gray: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(gray).float()[:, None]


@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "hole"])
def test_matches_skimage_on_real_photos(photos, masked):
    from skimage.feature import canny

    grays, knowns = photos
    known = _torch(knowns) if masked else None
    edges = Canny()(_torch(grays), known)
    assert edges.shape == (len(PHOTOS), 1, SIZE, SIZE) and edges.dtype == torch.float32
    assert set(torch.unique(edges).tolist()) <= {0.0, 1.0}
    for i, name in enumerate(PHOTOS):
        ref = canny(grays[i], sigma=2, mask=knowns[i].astype(bool) if masked else None)
        score = _f1(edges[i, 0].numpy() > 0.5, ref)
        assert ref.sum() > 50, f"{name}: the reference has too few edges to be a meaningful check"
        assert score >= 0.97, f"{name} ({'hole' if masked else 'no mask'}): F1 {score:.4f} < 0.97"


def test_no_edges_in_holes_or_on_the_border(photos):
    grays, knowns = photos
    edges = Canny()(_torch(grays), _torch(knowns))[:, 0]
    assert edges.sum() > 0
    assert float((edges * (1 - _torch(knowns)[:, 0])).sum()) == 0.0
    assert float(edges[:, 0].sum() + edges[:, -1].sum() + edges[:, :, 0].sum() + edges[:, :, -1].sum()) == 0.0


def test_batch_equals_single_images(photos):
    grays, knowns = photos
    batched = Canny()(_torch(grays[:3]), _torch(knowns[:3]))
    for i in range(3):
        single = Canny()(_torch(grays[i:i + 1]), _torch(knowns[i:i + 1]))
        assert torch.equal(batched[i:i + 1], single)


def test_hysteresis_rounds_link_weak_edges():
    """A step fading from strong to weak is linked to its far end, like skimage does, given enough rounds."""
    from skimage.feature import canny

    gray = np.zeros((64, 128))
    profile = np.concatenate([np.full(24, 0.3), np.linspace(0.3, 0.08, 40), np.full(64, 0.08)])
    gray[32:, :] = profile
    gray[31, :] = profile / 2  # centre the edge on a row: no exact magnitude ties for float32 to break
    ref = canny(gray, sigma=2)
    tensor = torch.from_numpy(gray).float()[None, None]
    linked = Canny(iterations=160)(tensor)[0, 0].numpy() > 0.5
    short = Canny(iterations=4)(tensor)[0, 0].numpy() > 0.5
    assert ref[:, 70:].sum() > 40, "the weak far end is an edge in skimage"
    assert np.array_equal(linked, ref)
    assert not short[:, 70:].any()


def test_other_float_dtypes_compute_in_float32(photos):
    grays, knowns = photos
    gray = _torch(grays[:2])
    reference = Canny()(gray)
    assert torch.equal(Canny()(gray.double()), reference.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(Canny()(gray), reference)


def test_sigma_minus_one_gives_no_edges(photos):
    grays, _ = photos
    edges = Canny(sigma=-1)(_torch(grays))
    assert edges.shape == (len(PHOTOS), 1, SIZE, SIZE) and float(edges.abs().sum()) == 0.0


def test_random_sigma_mixes_within_a_batch_and_is_reproducible(photos):
    grays, knowns = photos
    gray = _torch(np.repeat(grays[:1], 8, axis=0))
    known = _torch(np.repeat(knowns[:1], 8, axis=0))
    fixed = {s: Canny(sigma=s)(gray[:1], known[:1]) for s in (1, 2, 3, 4)}
    assert len({tuple(f.flatten().nonzero().flatten().tolist()) for f in fixed.values()}) == 4

    out = Canny(sigma=0)(gray, known, generator=torch.Generator().manual_seed(3))
    again = Canny(sigma=0)(gray, known, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out, again)
    chosen = []
    for i in range(8):
        matches = [s for s, f in fixed.items() if torch.equal(out[i:i + 1], f)]
        assert len(matches) == 1, f"image {i} matches no fixed sigma in 1..4"
        chosen.append(matches[0])
    assert len(set(chosen)) >= 2, f"a batch of 8 drew a single sigma: {chosen}"


@pytest.mark.gpu
def test_cuda_matches_cpu(photos):
    grays, knowns = photos
    cpu = Canny()(_torch(grays), _torch(knowns))
    cuda = Canny().cuda()(_torch(grays).cuda(), _torch(knowns).cuda())
    assert float((cuda.cpu() == cpu).float().mean()) >= 0.999
    random = Canny(sigma=0)(_torch(grays).cuda(), generator=torch.Generator("cuda").manual_seed(0))
    assert random.device.type == "cuda" and random.shape == cpu.shape


def test_random_sigma_kernels_are_normalised():
    kernels = random_sigma_kernels(16, torch.Generator().manual_seed(0))
    assert kernels.shape == (16, 33)
    torch.testing.assert_close(kernels.sum(dim=1), torch.ones(16))


@pytest.mark.parametrize("gray, known, message", [
    (torch.rand(1, 32, 32), None, r"\(N, 1, H, W\).*got shape \(1, 32, 32\)"),
    (torch.rand(1, 3, 32, 32), None, r"\(N, 1, H, W\).*got shape \(1, 3, 32, 32\)"),
    (torch.randint(0, 255, (1, 1, 32, 32), dtype=torch.uint8), None, r"float tensor.*\(N, 1, H, W\).*uint8"),
    (torch.rand(1, 1, 15, 32), None, r"H, W >= 16.*\(1, 1, 15, 32\)"),
    (torch.rand(2, 1, 32, 32), torch.ones(1, 1, 32, 32), r"known_mask must have the shape of gray \(2, 1, 32, 32\)"),
])
def test_bad_input_raises_value_error(gray, known, message):
    with pytest.raises(ValueError, match=message) as info:
        Canny()(gray, known)
    assert isinstance(info.value, (CannyInputError, EcError))


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="sigma"):
        Canny(sigma=-2)
    with pytest.raises(ValueError, match="low <= high"):
        Canny(low=0.3, high=0.2)
    with pytest.raises(ValueError, match="iterations"):
        Canny(iterations=-1)
