"""vtok.Recipe against `vtok run / tokenize / detokenize`, bit for bit."""
import os

import numpy as np
import pytest
from PIL import Image

from conftest import DEMO, SAMPLE, SHAPES_LLAVA, TINY_LLAVA


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


@pytest.fixture(scope="module")
def llava(vtok):
    with vtok.Recipe("llava-1.5", TINY_LLAVA, threads=2) as r:
        yield r


def test_names_and_info(vtok, llava):
    assert "llava-1.5" in vtok.recipe_names() and "seed" in vtok.recipe_names()
    i = llava.info
    assert i["name"] == "llava-1.5" and i["tokens_per_image"] == 64 and i["d_out"] == 96
    assert i["placeholder"] == "<image>" and i["ragged"] is False and i["experts"] == []


def test_run_bit_exact_with_cli(llava, cli, tmp_path):
    scene = os.path.join(DEMO, "scene-2000001.png")
    cli("run", "--recipe", "llava-1.5", "--model", TINY_LLAVA, "--image", SAMPLE,
        "--image", scene, "--out", tmp_path / "out", "--dump", tmp_path / "dump")
    want = np.load(tmp_path / "out" / "embeddings.npy")
    got = llava.run([SAMPLE, scene])
    assert got.shape == (2, 64, 96) and same(got, want)
    assert np.abs(got[0] - got[1]).max() > 1e-3
    st = llava.stages()
    assert list(st) == ["vit", "select", "projector"]
    for name, a in st.items():
        assert same(a, np.load(tmp_path / "dump" / (name + ".npy"))), name
    # a PIL image and a uint8 array of the PNG give the same tokens
    assert same(llava.run(Image.open(scene))[0], want[1])
    assert same(llava(np.asarray(Image.open(scene).convert("RGB")))[0], want[1])


def test_run_pixels_vs_cli(llava, cli, tmp_path):
    px = np.random.default_rng(3).standard_normal((2, 3, 64, 64)).astype(np.float32)
    np.save(tmp_path / "px.npy", px)
    cli("run", "--recipe", "llava-1.5", "--model", TINY_LLAVA, "--pixels", tmp_path / "px.npy",
        "--out", tmp_path / "out")
    assert same(llava.run(px), np.load(tmp_path / "out" / "embeddings.npy"))


def test_run_shapes_recipe_json_path_and_dtype(vtok, cli, tmp_path):
    """A recipe given as a JSON file, at bf16, equals `vtok run --dtype bf16`."""
    rp = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "recipes", "llava-1.5.json")
    scene = os.path.join(DEMO, "scene-2000002.png")
    cli("run", "--recipe", rp, "--model", SHAPES_LLAVA, "--image", scene, "--dtype", "bf16",
        "--out", tmp_path / "out")
    r = vtok.Recipe(rp, SHAPES_LLAVA, dtype="bf16")
    assert same(r.run(scene), np.load(tmp_path / "out" / "embeddings.npy"))


def test_errors(vtok, llava, tmp_path, cli):
    missing = str(tmp_path / "nothing-here")
    with pytest.raises(vtok.VtokError) as e:
        vtok.Recipe("llava-1.5", missing)
    r = cli("run", "--recipe", "llava-1.5", "--model", missing, "--image", SAMPLE,
            "--out", tmp_path / "o", ok=False)
    assert r.returncode != 0 and r.stderr.strip() == "vtok: " + str(e.value)
    assert "nothing-here" in str(e.value)
    with pytest.raises(vtok.VtokError, match="unknown recipe"):
        vtok.Recipe("no-such-recipe", TINY_LLAVA)
    with pytest.raises(ValueError, match="not discrete ids"):
        llava.tokenize(SAMPLE)
    with pytest.raises(ValueError, match="de-tokenizer"):
        llava.detokenize([[1, 2]])
    with pytest.raises(ValueError, match="no experts"):
        llava.run(SAMPLE, experts="A")
    with pytest.raises(ValueError, match="H x W x 3"):
        llava.run(np.zeros((5, 5, 2), np.uint8))
    with pytest.raises(vtok.VtokError) as e:
        llava.run(np.zeros((1, 3, 10, 10), np.float32))
    assert e.value.code < 0
    assert llava.run(SAMPLE).shape == (1, 64, 96)  # still usable


def test_abort(vtok, llava):
    seen = []
    llava.run(SAMPLE, progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1] and len(seen) == seen[-1][1]
    with pytest.raises(vtok.AbortedError):
        llava.run(SAMPLE, abort=lambda: True)


def test_seed_tokenize_detokenize_vs_cli(vtok, cli, seed_model, tmp_path):
    """SEED-style discrete ids (a tiny random SEED tokenizer) and the
    de-tokenizer, against `vtok tokenize` / `vtok detokenize`."""
    rp, model = seed_model
    r = vtok.Recipe(rp, model, threads=2)
    assert r.info["ids_per_image"] == 8 and r.info["can_detokenize"]
    imgs = []
    for s in range(3):
        rng = np.random.default_rng(40 + s)
        p = tmp_path / ("img%d.png" % s)
        Image.fromarray(rng.integers(0, 256, tuple(rng.integers(20, 60, 2)) + (3,),
                                     np.uint8)).save(p)
        imgs.append(str(p))
    args = ["--recipe", rp, "--model", model]
    cli("tokenize", *args, *[x for p in imgs for x in ("--image", p)], "--out", tmp_path / "t")
    want = np.load(tmp_path / "t" / "ids.npy")
    got = r.tokenize(imgs)
    assert got.dtype == np.int64 and same(got, want) and got.shape == (3, 8)
    assert len(set(got.ravel().tolist())) > 2
    cli("detokenize", *args, "--ids", tmp_path / "t" / "ids.npy", "--out", tmp_path / "d")
    want_d = np.load(tmp_path / "d" / "generation_embeddings.npy")
    got_d = r.detokenize(got)
    assert same(got_d, want_d) and got_d.shape == (3, 77, 48)
    assert same(r.detokenize(got[0]), want_d[:1])  # one row of ids
    with pytest.raises(vtok.VtokError) as e:
        r.detokenize([[0] * 7 + [64]])  # code 64 of a 64-entry book
    assert e.value.code == -1 and "64" in str(e.value)
    with pytest.raises(TypeError):
        r.detokenize(np.zeros((1, 8), np.float32))


def test_ragged_recipe_vs_cli(vtok, cli, llava_next_model, tmp_path):
    """llava-next (anyres slicing): a list of per-image [T_i, d] arrays whose
    concatenation is `vtok run`'s [all tokens, d] and whose counts are its
    layout.json tokens."""
    import json
    r = vtok.Recipe("llava-next", llava_next_model)
    assert r.info["ragged"] is True
    wide = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (30, 90, 3), np.uint8)).save(wide)
    imgs = [SAMPLE, str(wide)]
    cli("run", "--recipe", "llava-next", "--model", llava_next_model, "--image", imgs[0],
        "--image", imgs[1], "--out", tmp_path / "out")
    want = np.load(tmp_path / "out" / "embeddings.npy")
    counts = json.load(open(tmp_path / "out" / "layout.json"))["tokens"]
    got = r.run(imgs)
    assert isinstance(got, list) and [a.shape[0] for a in got] == counts
    assert counts[0] != counts[1] and all(a.shape[1] == 96 for a in got)
    assert same(np.concatenate(got), want)
