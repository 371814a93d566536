"""Hostile output paths for ec-inpaint: name clashes, outputs onto inputs, existing outputs,
unwritable locations, atomic writes and file modes. Every refusal happens before any work, so
the case asserts the exact file state afterwards."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from ec_runtime.imageio import read_image
from tests.hostile.inpaint_helpers import box_mask, demo_export, inpaint_cli, pair, photo, save, snapshot  # noqa: F401


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda value: os.umask(value)
    os.umask(old)


def _two_stems(root):
    """root/in holds x.jpg and x.png (same stem) plus y.png; root/m.png is the mask."""
    save(root / "in" / "x.jpg", photo(seed=1), quality=95)
    save(root / "in" / "x.png", photo(seed=2))
    save(root / "in" / "y.png", photo(seed=3))
    save(root / "m.png", box_mask())


def test_same_stem_clash_is_refused_before_any_work(tmp_path, demo_export):
    _two_stems(tmp_path)
    text = inpaint_cli([tmp_path / "in", "--mask", tmp_path / "m.png", "-o", tmp_path / "out", "--model", demo_export],
                       code=1)
    assert "x.jpg" in text and "x.png" in text and "same output" in text
    assert not (tmp_path / "out").exists()


def test_output_into_the_input_directory_never_touches_an_input(tmp_path, demo_export):
    _two_stems(tmp_path)
    (tmp_path / "in" / "x.jpg").unlink()
    before = snapshot(tmp_path)
    text = inpaint_cli([tmp_path / "in", "--mask", tmp_path / "m.png", "-o", tmp_path / "in", "--model", demo_export],
                       code=1)
    assert "refusing to overwrite input" in text and "x.png" in text
    assert snapshot(tmp_path) == before
    # even with --overwrite: inputs are never replaced
    inpaint_cli([tmp_path / "in", "--mask", tmp_path / "m.png", "-o", tmp_path / "in", "--model", demo_export,
                 "--overwrite"], code=1)
    assert snapshot(tmp_path) == before


def test_jpeg_inputs_into_their_own_directory_are_fine(tmp_path, demo_export):
    save(tmp_path / "in" / "a.jpg", photo(seed=4), quality=95)
    save(tmp_path / "m.png", box_mask())
    inpaint_cli([tmp_path / "in", "--mask", tmp_path / "m.png", "-o", tmp_path / "in", "--model", demo_export], code=0)
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["a.jpg", "a.png"]


def test_output_onto_a_mask_is_refused(tmp_path, demo_export):
    ip, mp, _, _ = pair(tmp_path)
    save(tmp_path / "in" / "img_mask.png", photo())  # an image whose output would be the mask file
    before = snapshot(tmp_path)
    inpaint_cli([ip, "--mask", mp, "-o", mp, "--model", demo_export, "--overwrite"], code=1)
    inpaint_cli([tmp_path / "in", "--mask", mp, "-o", tmp_path, "--model", demo_export, "--overwrite"], code=1)
    assert snapshot(tmp_path) == before


def test_output_into_the_mask_directory_is_refused(tmp_path, demo_export):
    save(tmp_path / "in" / "a.png", photo())
    save(tmp_path / "masks" / "a.png", box_mask())
    before = snapshot(tmp_path)
    inpaint_cli([tmp_path / "in", "--mask", tmp_path / "masks", "-o", tmp_path / "masks", "--model", demo_export,
                 "--overwrite"], code=1)
    assert snapshot(tmp_path) == before


def test_symlinked_output_pointing_at_the_input_is_refused(tmp_path, demo_export):
    ip, mp, _, _ = pair(tmp_path)
    (tmp_path / "link.png").symlink_to(ip)
    before = snapshot(tmp_path)
    inpaint_cli([ip, "--mask", mp, "-o", tmp_path / "link.png", "--model", demo_export, "--overwrite"], code=1)
    assert snapshot(tmp_path) == before


def test_save_edges_output_clashing_with_an_input_is_refused(tmp_path, demo_export):
    save(tmp_path / "in" / "a.png", photo(seed=1))
    save(tmp_path / "in" / "a_edges.png", photo(seed=2))
    save(tmp_path / "m.png", box_mask())
    before = snapshot(tmp_path)
    text = inpaint_cli([tmp_path / "in", "--mask", tmp_path / "m.png", "-o", tmp_path / "in", "--model", demo_export,
                        "--save-edges", "--overwrite"], code=1)
    assert "a_edges.png" in text and snapshot(tmp_path) == before


def test_existing_output_needs_overwrite(tmp_path, demo_export, umask):
    ip, mp, img, mask = pair(tmp_path)
    (tmp_path / "out.png").write_bytes(b"the user's own file")
    before = snapshot(tmp_path)
    text = inpaint_cli([ip, "--mask", mp, "-o", tmp_path / "out.png", "--model", demo_export], code=1)
    assert "already exist" in text and "--overwrite" in text and snapshot(tmp_path) == before
    inpaint_cli([ip, "--mask", mp, "-o", tmp_path / "out.png", "--model", demo_export, "--overwrite"], code=0)
    out = read_image(tmp_path / "out.png")
    assert np.array_equal(out[~mask], img[~mask])


def test_existing_outputs_in_a_directory_are_all_refused_before_work(tmp_path, demo_export):
    for stem in "abcde":
        save(tmp_path / "in" / f"{stem}.png", photo(seed=ord(stem)))
    save(tmp_path / "m.png", box_mask())
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "c.png").write_bytes(b"keep me")
    (tmp_path / "out" / "notes.txt").write_text("mine")
    before = snapshot(tmp_path / "out")
    text = inpaint_cli([tmp_path / "in", "--mask", tmp_path / "m.png", "-o", tmp_path / "out",
                        "--model", demo_export], code=1)
    assert "c.png" in text and snapshot(tmp_path / "out") == before  # a.png, b.png not written either
    inpaint_cli([tmp_path / "in", "--mask", tmp_path / "m.png", "-o", tmp_path / "out", "--model", demo_export,
                 "--overwrite"], code=0)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "c.png", "d.png", "e.png",
                                                                    "notes.txt"]
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


def test_a_rerun_without_overwrite_leaves_the_first_results(tmp_path, demo_export):
    ip, mp, _, _ = pair(tmp_path)
    inpaint_cli([ip, "--mask", mp, "-o", tmp_path / "o", "--model", demo_export, "--save-edges"], code=0)
    first = snapshot(tmp_path / "o")
    assert sorted(first) == ["img.png", "img_edges.png"]
    inpaint_cli([ip, "--mask", mp, "-o", tmp_path / "o", "--model", demo_export, "--save-edges"], code=1)
    assert snapshot(tmp_path / "o") == first


@pytest.mark.parametrize("mask_value,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_the_usual_modes(tmp_path, demo_export, umask, mask_value, mode):
    ip, mp, _, _ = pair(tmp_path)
    umask(mask_value)
    inpaint_cli([ip, "--mask", mp, "-o", tmp_path / "out", "--model", demo_export, "--save-edges"], code=0)
    for name in ("img.png", "img_edges.png"):
        assert stat.S_IMODE((tmp_path / "out" / name).stat().st_mode) == mode


def test_an_interrupted_run_leaves_whole_files_and_no_temporaries(tmp_path, demo_export, monkeypatch):
    for stem in "abc":
        save(tmp_path / "in" / f"{stem}.png", photo(seed=ord(stem)))
    save(tmp_path / "m.png", box_mask())
    import ec_runtime.imagewrite as imagewrite

    real, calls = imagewrite._encode, []

    def encode_then_stop(path, image, tmp):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(path, image, tmp)

    monkeypatch.setattr(imagewrite, "_encode", encode_then_stop)
    inpaint_cli([tmp_path / "in", "--mask", tmp_path / "m.png", "-o", tmp_path / "out", "--model", demo_export],
                code=1)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]
    assert read_image(tmp_path / "out" / "a.png").shape == (48, 64, 3)


def test_a_failed_replace_keeps_the_old_output(tmp_path, demo_export, monkeypatch):
    ip, mp, _, _ = pair(tmp_path)
    (tmp_path / "out.png").write_bytes(b"old result")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    text = inpaint_cli([ip, "--mask", mp, "-o", tmp_path / "out.png", "--model", demo_export, "--overwrite"], code=1)
    assert "No space left" in text
    assert (tmp_path / "out.png").read_bytes() == b"old result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png", "img_mask.png", "out.png"]


@pytest.mark.parametrize("where", ["under-a-file", "proc", "file-as-dir-output", "output-name-is-a-dir"])
def test_unwritable_output_locations(tmp_path, demo_export, where):
    ip, mp, _, _ = pair(tmp_path / "in")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir" / "img.png").mkdir(parents=True)
    args = {"under-a-file": [ip, "-o", tmp_path / "afile" / "sub" / "o.png"],
            "proc": [ip, "-o", "/proc/ec-inpaint-test/o.png"],
            "file-as-dir-output": [tmp_path / "in", "-o", tmp_path / "afile"],
            "output-name-is-a-dir": [tmp_path / "in", "-o", tmp_path / "adir"]}[where]
    before = snapshot(tmp_path)
    text = inpaint_cli([*args, "--mask", mp, "--model", demo_export, "--overwrite"], code=1)
    assert len(text.strip().splitlines()) == 1, text
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_output_directory(tmp_path, demo_export):
    ip, mp, _, _ = pair(tmp_path / "in")
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    try:
        text = inpaint_cli([ip, "--mask", mp, "-o", tmp_path / "ro" / "o.png", "--model", demo_export], code=1)
        assert "not writable" in text
        text = inpaint_cli([ip, "--mask", mp, "-o", tmp_path / "ro" / "sub" / "o.png", "--model", demo_export],
                           code=1)
        assert "not writable" in text and not (tmp_path / "ro" / "sub").exists()
    finally:
        (tmp_path / "ro").chmod(0o755)


def test_missing_output_directories_are_created(tmp_path, demo_export):
    ip, mp, _, _ = pair(tmp_path / "in")
    inpaint_cli([ip, "--mask", mp, "-o", tmp_path / "a" / "b" / "c.png", "--model", demo_export], code=0)
    assert (tmp_path / "a" / "b" / "c.png").is_file()
    assert [p.name for p in (tmp_path / "a" / "b").iterdir()] == ["c.png"]  # no probe or temporary left


def test_model_errors_leave_no_output_directory(tmp_path):
    ip, mp, _, _ = pair(tmp_path / "in")
    inpaint_cli([ip, "--mask", mp, "-o", tmp_path / "new" / "o.png", "--model", tmp_path / "nowhere"], code=1)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("suffix", [".gif", ".txt", ".PNG.bak"])
def test_unsupported_output_format_is_refused_before_work(tmp_path, demo_export, suffix):
    ip, mp, _, _ = pair(tmp_path)
    before = snapshot(tmp_path)
    text = inpaint_cli([ip, "--mask", mp, "-o", tmp_path / f"o{suffix}", "--model", demo_export], code=1)
    assert "unsupported output format" in text and snapshot(tmp_path) == before


def test_mask_directory_equal_to_input_directory_is_refused(tmp_path, demo_export):
    save(tmp_path / "in" / "a.png", photo())
    before = snapshot(tmp_path)
    text = inpaint_cli([tmp_path / "in", "--mask", tmp_path / "in", "-o", tmp_path / "out", "--model", demo_export],
                       code=1)
    assert "mask directory is the input directory" in text and snapshot(tmp_path) == before


def test_mask_file_inside_the_input_directory_is_not_inpainted(tmp_path, demo_export):
    save(tmp_path / "in" / "a.png", photo())
    save(tmp_path / "in" / "hole.png", box_mask())
    text = inpaint_cli([tmp_path / "in", "--mask", tmp_path / "in" / "hole.png", "-o", tmp_path / "out",
                        "--model", demo_export], code=0)
    assert "1/1" in text and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]


def test_two_masks_for_one_stem_are_refused(tmp_path, demo_export):
    save(tmp_path / "in" / "a.png", photo())
    save(tmp_path / "masks" / "a.png", box_mask())
    save(tmp_path / "masks" / "a.jpg", box_mask(), quality=95)
    text = inpaint_cli([tmp_path / "in", "--mask", tmp_path / "masks", "-o", tmp_path / "out", "--model", demo_export],
                       code=1)
    assert "a.jpg" in text and "a.png" in text and not (tmp_path / "out").exists()


def test_hidden_and_temporary_files_are_not_inputs(tmp_path, demo_export):
    save(tmp_path / "in" / "a.png", photo())
    (tmp_path / "in" / ".a.png.1234.tmp").write_bytes(b"partial")
    (tmp_path / "in" / "._a.png").write_bytes(b"macOS resource fork")
    save(tmp_path / "m.png", box_mask())
    text = inpaint_cli([tmp_path / "in", "--mask", tmp_path / "m.png", "-o", tmp_path / "out", "--model", demo_export],
                       code=0)
    assert "1/1" in text


def test_a_missing_mask_fails_only_its_image(tmp_path, demo_export):
    for stem in "ab":
        save(tmp_path / "in" / f"{stem}.png", photo(seed=ord(stem)))
    save(tmp_path / "masks" / "a.png", box_mask())
    text = inpaint_cli([tmp_path / "in", "--mask", tmp_path / "masks", "-o", tmp_path / "out", "--model", demo_export],
                       code=1)
    assert "1/2" in text and "b.png" in text and "Traceback" not in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]


def test_output_directory_symlinked_to_the_input_directory_is_refused(tmp_path, demo_export):
    save(tmp_path / "in" / "a.png", photo())
    save(tmp_path / "m.png", box_mask())
    (tmp_path / "alias").symlink_to(tmp_path / "in", target_is_directory=True)
    before = snapshot(tmp_path / "in")
    inpaint_cli([tmp_path / "in", "--mask", tmp_path / "m.png", "-o", tmp_path / "alias", "--model", demo_export,
                 "--overwrite"], code=1)
    assert snapshot(tmp_path / "in") == before


@pytest.mark.parametrize("case", ["missing-input", "missing-mask", "empty-input-dir", "text-as-png", "empty-file",
                                  "size-mismatch", "dir-as-mask-for-file"])
def test_bad_inputs_are_one_clear_line(tmp_path, demo_export, case):
    ip, mp, _, _ = pair(tmp_path / "in")
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.png").write_text("just text")
    (tmp_path / "zero.png").write_bytes(b"")
    save(tmp_path / "small_mask.png", box_mask(24, 32, (2, 2, 10, 10)))
    (tmp_path / "masks").mkdir()
    args = {"missing-input": [tmp_path / "nope.png", "--mask", mp],
            "missing-mask": [ip, "--mask", tmp_path / "nope_mask.png"],
            "empty-input-dir": [tmp_path / "empty", "--mask", mp],
            "text-as-png": [tmp_path / "notes.png", "--mask", mp],
            "empty-file": [tmp_path / "zero.png", "--mask", mp],
            "size-mismatch": [ip, "--mask", tmp_path / "small_mask.png"],
            "dir-as-mask-for-file": [ip, "--mask", tmp_path / "masks"]}[case]
    before = snapshot(tmp_path)
    text = inpaint_cli([*args, "-o", tmp_path / "out.png", "--model", demo_export], code=1)
    assert "Traceback" not in text and snapshot(tmp_path) == before
    assert any(str(p) in text for p in args if isinstance(p, os.PathLike)), text


def test_unicode_and_space_names_round_trip(tmp_path, demo_export):
    img = photo(seed=9)
    save(tmp_path / "fotos mit ä" / "bild ü.png", img)
    save(tmp_path / "maske ö.png", box_mask())
    inpaint_cli([tmp_path / "fotos mit ä", "--mask", tmp_path / "maske ö.png", "-o", tmp_path / "aus gabe",
                 "--model", demo_export], code=0)
    out = read_image(tmp_path / "aus gabe" / "bild ü.png")
    assert np.array_equal(out[~box_mask()], img[~box_mask()])


@pytest.mark.parametrize("form", ["rgba", "16bit", "palette", "jpeg-0-255", "gray-alpha"])
def test_mask_file_forms_in_the_cli(tmp_path, demo_export, form):
    from PIL import Image

    img, mask = photo(seed=2), box_mask()
    save(tmp_path / "a.png", img)
    m8 = mask.astype(np.uint8) * 255
    if form == "rgba":
        Image.fromarray(np.dstack([m8, m8, m8, np.full_like(m8, 255)])).save(tmp_path / "m.png")
    elif form == "16bit":
        Image.fromarray(mask.astype(np.uint16) * 65535).save(tmp_path / "m.png")
    elif form == "palette":
        Image.fromarray(np.dstack([m8] * 3)).quantize(2).save(tmp_path / "m.png")
    elif form == "jpeg-0-255":
        Image.fromarray(m8).save(tmp_path / "m.jpg", quality=50)
    else:
        Image.fromarray(np.dstack([m8, np.full_like(m8, 255)]), "LA").save(tmp_path / "m.png")
    name = "m.jpg" if form == "jpeg-0-255" else "m.png"
    inpaint_cli([tmp_path / "a.png", "--mask", tmp_path / name, "-o", tmp_path / "o.png", "--model", demo_export],
                code=0)
    out = read_image(tmp_path / "o.png")
    assert np.array_equal(out[~mask], img[~mask]) and not np.array_equal(out[mask], img[mask])


# The next cases are not run against the old code: there a FIFO or /dev/zero input blocks or reads forever,
# and an existing device output would have been replaced (as root, /dev/null itself).
def test_special_files_as_inputs_and_outputs_are_refused(tmp_path, demo_export):
    ip, mp, _, _ = pair(tmp_path / "in")
    os.mkfifo(tmp_path / "fifo.png")
    for args in ([tmp_path / "fifo.png", "--mask", mp, "-o", tmp_path / "o.png"],
                 [ip, "--mask", tmp_path / "fifo.png", "-o", tmp_path / "o.png"],
                 ["/dev/zero", "--mask", mp, "-o", tmp_path / "o.png"],
                 [ip, "--mask", mp, "-o", tmp_path / "fifo.png", "--overwrite"],
                 [ip, "--mask", mp, "-o", "/dev/null", "--overwrite"]):
        text = inpaint_cli([*args, "--model", demo_export], code=1)
        assert "regular file" in text or "not a directory" in text, text
    assert stat.S_ISFIFO((tmp_path / "fifo.png").stat().st_mode) and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"])
def test_every_output_format_is_written_whole_with_the_usual_mode(tmp_path, demo_export, umask, suffix):
    ip, mp, img, mask = pair(tmp_path)
    umask(0o022)
    inpaint_cli([ip, "--mask", mp, "-o", tmp_path / f"o{suffix}", "--model", demo_export], code=0)
    out = read_image(tmp_path / f"o{suffix}")
    assert out.shape == img.shape and stat.S_IMODE((tmp_path / f"o{suffix}").stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["img.png", "img_mask.png", f"o{suffix}"])


def test_write_image_without_overwrite_never_replaces(tmp_path):
    from ec_runtime.errors import OutputError
    from ec_runtime.imageio import write_image

    (tmp_path / "o.png").write_bytes(b"mine")
    with pytest.raises(OutputError, match="already exists"):
        write_image(tmp_path / "o.png", photo(), overwrite=False)
    assert (tmp_path / "o.png").read_bytes() == b"mine" and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(OutputError, match="cannot write"):
        write_image(tmp_path / "o.png" / "x.png", photo())


@pytest.mark.skipif(os.geteuid() == 0, reason="root lists any directory")
def test_unlistable_input_and_mask_directories(tmp_path, demo_export):
    save(tmp_path / "in" / "a.png", photo())
    save(tmp_path / "masks" / "a.png", box_mask())
    for locked in ("in", "masks"):
        (tmp_path / locked).chmod(0o300)  # writable and enterable, not listable
        try:
            text = inpaint_cli([tmp_path / "in", "--mask", tmp_path / "masks", "-o", tmp_path / "out",
                                "--model", demo_export], code=2)  # click's own readability check
            assert "not readable" in text
        finally:
            (tmp_path / locked).chmod(0o755)
    assert not (tmp_path / "out").exists()
