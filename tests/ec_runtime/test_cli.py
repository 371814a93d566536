import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ec_runtime.cli import main
from ec_runtime.imageio import read_image, write_image
from tests.helpers import photo_and_mask


def _write_pair(root, stem, name, size, seed):
    """Write in/<stem>.png and masks/<stem>.png (white = hole); return the arrays."""
    img, mask = photo_and_mask(name, size, seed)
    write_image(root / "in" / f"{stem}.png", img)
    Image.fromarray(mask * 255).save(root / "masks" / f"{stem}.png")
    return img, mask


@pytest.fixture
def photos(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "masks").mkdir()
    pairs = {stem: _write_pair(tmp_path, stem, name, 64, i)
             for i, (stem, name) in enumerate([("a", "astronaut"), ("b", "coffee"), ("c", "chelsea")])}
    return tmp_path, pairs


def test_directory_with_matched_masks_and_a_failing_file(photos, lite_export):
    root, pairs = photos
    (root / "in" / "d.png").write_bytes(b"not a png")              # corrupt input
    write_image(root / "in" / "e.png", pairs["a"][0])              # no mask named e.*
    result = CliRunner().invoke(main, [str(root / "in"), "--mask", str(root / "masks"), "-o", str(root / "out"),
                                       "--model", str(lite_export), "--batch", "2", "--save-edges"])
    assert result.exit_code == 1, result.output
    assert "inpainted 3/5" in result.output
    assert "2 failed" in result.output and "d.png" in result.output and "e.png" in result.output
    for stem, (img, mask) in pairs.items():
        out = read_image(root / "out" / f"{stem}.png")
        assert np.array_equal(out[mask == 0], img[mask == 0]) and not np.array_equal(out, img)
        assert (root / "out" / f"{stem}_edges.png").is_file()


def test_single_file_single_mask_and_resize_mask(tmp_path, lite_export):
    img, mask = photo_and_mask("rocket", 64, 1)
    write_image(tmp_path / "img.png", img)
    Image.fromarray(np.kron(mask, np.ones((2, 2), np.uint8)) * 255).save(tmp_path / "big_mask.png")
    args = [str(tmp_path / "img.png"), "--mask", str(tmp_path / "big_mask.png"), "-o", str(tmp_path / "out.png"),
            "--model", str(lite_export)]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1 and "--resize-mask" in refused.output
    ok = CliRunner().invoke(main, args + ["--resize-mask", "--strategy", "resize", "--threads", "1"])
    assert ok.exit_code == 0, ok.output
    out = read_image(tmp_path / "out.png")
    assert out.shape == img.shape and np.array_equal(out[mask == 0], img[mask == 0])


def test_never_overwrites_the_input(tmp_path, lite_export):
    img, mask = photo_and_mask("coffee", 64, 2)
    write_image(tmp_path / "img.png", img)
    Image.fromarray(mask * 255).save(tmp_path / "m.png")
    result = CliRunner().invoke(main, [str(tmp_path / "img.png"), "--mask", str(tmp_path / "m.png"),
                                       "-o", str(tmp_path / "img.png"), "--model", str(lite_export)])
    assert result.exit_code == 1 and "refusing to overwrite" in result.output
    assert np.array_equal(read_image(tmp_path / "img.png"), img)


def test_missing_model_directory_says_how_to_make_one(tmp_path, monkeypatch):
    img, mask = photo_and_mask("coffee", 32, 2)
    write_image(tmp_path / "img.png", img)
    Image.fromarray(mask * 255).save(tmp_path / "m.png")
    monkeypatch.setenv("EC_MODEL_DIR", str(tmp_path / "no_export"))
    result = CliRunner().invoke(main, [str(tmp_path / "img.png"), "--mask", str(tmp_path / "m.png"),
                                       "-o", str(tmp_path / "o.png")])
    assert result.exit_code != 0
    assert str(tmp_path / "no_export") in result.output and "ec-export" in result.output
