"""vtok.Model against `vtok encode` / `vtok preprocess`, bit for bit; inputs
of every kind; errors."""
import os

import numpy as np
import pytest
from PIL import Image

from conftest import MODELS, SAMPLE, TINY_CLIP


@pytest.fixture(scope="module")
def clip(vtok):
    with vtok.Model(TINY_CLIP, threads=2) as m:
        yield m


def load_dir(d):
    return {f[:-4]: np.load(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".npy")}


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


def test_info(clip):
    i = clip.info
    assert i["arch"] == "clip" and i["n_layers"] == 4 and i["hidden_size"] == 64
    assert i["projection_dim"] == 32 and i["has_pooler"] is True


def test_encode_images_bit_exact_with_cli(clip, cli, tmp_path):
    """Two files, all layers: every output file of `vtok encode` equals the binding's."""
    other = tmp_path / "other.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), np.uint8)).save(other)
    cli("encode", "--model", TINY_CLIP, "--image", SAMPLE, "--image", other, "--layers", "all",
        "--out", tmp_path / "out", "--threads", "2")
    want = load_dir(tmp_path / "out")
    got = clip.encode([SAMPLE, str(other)], layers="all")
    assert sorted(got["hidden_states"]) == [0, 1, 2, 3, 4]
    for k in ("last_hidden_state", "pooler_output", "image_embeds"):
        assert same(got[k], want[k]), k
    for layer, a in got["hidden_states"].items():
        assert same(a, want["hidden_states_%02d" % layer]), layer
    assert got["last_hidden_state"].shape == (2, 65, 64)
    assert np.abs(got["last_hidden_state"][0] - got["last_hidden_state"][1]).max() > 1e-3


def test_encode_pixels_and_layer_list_vs_cli(clip, cli, tmp_path):
    px = os.path.join(MODELS, "sample_pixels.npy")
    cli("encode", "--model", TINY_CLIP, "--pixels", px, "--layers", "-2,1",
        "--out", tmp_path / "out")
    want = load_dir(tmp_path / "out")
    got = clip.encode(np.load(px), layers=[-2, 1])
    assert sorted(got["hidden_states"]) == [1, 3]
    assert same(got["hidden_states"][3], want["hidden_states_03"])
    assert same(got["hidden_states"][1], want["hidden_states_01"])
    assert same(got["last_hidden_state"], want["last_hidden_state"])
    assert "hidden_states" not in clip.encode(np.load(px))


def test_preprocess_vs_cli(clip, cli, tmp_path):
    cli("preprocess", "--model", TINY_CLIP, SAMPLE, "--out", tmp_path / "px.npy")
    assert same(clip.preprocess(SAMPLE), np.load(tmp_path / "px.npy"))


def test_pil_and_array_inputs_equal_file_input(clip, tmp_path):
    """A PNG decodes exactly as Pillow does, so the path, the PIL image and its
    array give the same pixels and features; float64 pixels are converted."""
    p = tmp_path / "x.png"
    arr = np.random.default_rng(1).integers(0, 256, (40, 33, 3), np.uint8)
    Image.fromarray(arr).save(p)
    a = clip.encode(str(p))["pooler_output"]
    assert same(clip.encode(Image.open(p))["pooler_output"], a)
    assert same(clip.encode(arr)["pooler_output"], a)
    assert same(clip.encode(arr[None])["pooler_output"], a)        # [N, H, W, 3]
    assert same(clip.encode(Image.open(p).convert("L"))["pooler_output"],
                clip.encode(Image.open(p).convert("L").convert("RGB"))["pooler_output"])
    px = clip.preprocess(arr)
    assert same(clip.encode(px.astype(np.float64))["pooler_output"], a)
    # a non-contiguous view is copied, not misread
    big = np.zeros((40, 66, 3), np.uint8)
    big[:, ::2] = arr
    assert same(clip.encode(big[:, ::2])["pooler_output"], a)


def test_outputs_are_copies(clip):
    """A result is the caller's: the next encode does not change it."""
    px = clip.preprocess(SAMPLE)
    a = clip.encode(px)["last_hidden_state"]
    keep = a.copy()
    clip.encode(np.zeros_like(px))
    assert a.flags.owndata and same(a, keep)


def test_missing_folder_raises_the_library_message(vtok, cli, tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(vtok.VtokError) as e:
        vtok.Model(missing)
    r = cli("encode", "--model", missing, "--pixels", os.path.join(MODELS, "sample_pixels.npy"),
            "--out", tmp_path / "o", ok=False)
    assert r.returncode != 0
    assert str(e.value) and "no-such-model" in str(e.value)
    assert r.stderr.strip() == "vtok: " + str(e.value)
    assert e.value.code < 0 and e.value.name


@pytest.mark.parametrize("bad, exc, words", [
    (np.zeros((10, 10, 4), np.uint8), ValueError, "H x W x 3"),
    (np.zeros((10, 10), np.uint8), ValueError, "H x W x 3"),
    (np.zeros((0, 10, 3), np.uint8), ValueError, "H x W x 3"),
    (np.zeros((3, 64, 64), np.float32), ValueError, "4-D"),
    (np.zeros((10, 10, 3), np.int16), TypeError, "uint8"),
    ([], ValueError, "no images"),
    ([object()], TypeError, "image 0"),
    (42, TypeError, "images"),
])
def test_bad_inputs_raise(clip, bad, exc, words):
    with pytest.raises(exc) as e:
        clip.encode(bad)
    assert words in str(e.value)


def test_library_checks_pixel_shapes(vtok, clip):
    """Shapes only the model can judge come back as the library's message."""
    with pytest.raises(vtok.VtokError) as e:
        clip.encode(np.zeros((1, 3, 32, 32), np.float32))  # not 64 x 64, no interpolation
    assert e.value.code == -7 and "32" in str(e.value)
    with pytest.raises(vtok.VtokError) as e:
        clip.encode(np.zeros((1, 4, 64, 64), np.float32))
    assert e.value.code < 0 and str(e.value)
    assert clip.encode(np.zeros((1, 3, 64, 64), np.float32))["last_hidden_state"].shape == \
        (1, 65, 64)  # the context is still usable


def test_bad_image_file(vtok, clip, tmp_path):
    p = tmp_path / "junk.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(vtok.VtokError) as e:
        clip.encode([SAMPLE, str(p)])
    assert "junk.png" in str(e.value)


def test_bad_args(vtok, tmp_path):
    with pytest.raises(ValueError):
        vtok.Model(TINY_CLIP, dtype="f8")
    m = vtok.Model(TINY_CLIP)
    with pytest.raises(ValueError):
        m.encode(SAMPLE, layers="some")
    with pytest.raises(vtok.VtokError):
        m.encode(SAMPLE, layers=[99])
    m.close()
    m.close()
    with pytest.raises(ValueError, match="closed"):
        m.encode(SAMPLE)


def test_progress_and_abort(vtok, clip):
    px = clip.preprocess(SAMPLE)
    steps = []
    clip.encode(px, progress=lambda d, t: steps.append((d, t)))
    assert steps == [(k, 5) for k in range(1, 6)]  # n_layers + 1
    calls = []

    def stop_at_third():
        calls.append(1)
        return len(calls) >= 3
    with pytest.raises(vtok.AbortedError) as e:
        clip.encode(px, abort=stop_at_third)
    assert e.value.code == -9 and len(calls) == 3

    class Boom(Exception):
        pass

    def boom(d, t):
        raise Boom("from progress")
    with pytest.raises(Boom):
        clip.encode(px, progress=boom)
    # the next call runs clean
    assert clip.encode(px, abort=lambda: False)["pooler_output"].shape == (1, 64)


def test_dtypes_close(vtok):
    px = np.load(os.path.join(MODELS, "sample_pixels.npy"))
    f32 = vtok.Model(TINY_CLIP).encode(px)["last_hidden_state"].ravel()
    for dt in ("bf16", "int8"):
        m = vtok.Model(TINY_CLIP, dtype=dt)
        assert m.info["compute_dtype"] == dt
        a = m.encode(px)["last_hidden_state"].ravel()
        cos = float(a @ f32 / np.linalg.norm(a) / np.linalg.norm(f32))
        assert cos > 0.99 and not np.array_equal(a, f32)
