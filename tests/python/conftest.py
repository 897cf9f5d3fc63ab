"""Fixtures of the Python binding tests (ctest python_bindings).

    VTOK_LIB=build/libvtok.so [VTOK_CLI=build/vtok] python3 -m pytest -q tests/python

The bindings are imported from python/ of this checkout; the CLI they are
compared with is $VTOK_CLI, or the `vtok` next to $VTOK_LIB.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "python"))

MODELS = os.path.join(REPO, "models")
TINY_CLIP = os.path.join(MODELS, "tiny-clip")
TINY_LLAVA = os.path.join(MODELS, "tiny-llava")
SHAPES_LLAVA = os.path.join(MODELS, "shapes", "llava")
SHAPES_LLM = os.path.join(SHAPES_LLAVA, "llm")
DEMO = os.path.join(MODELS, "shapes", "demo")
SAMPLE = os.path.join(MODELS, "sample.jpg")


def _cli_path():
    p = os.environ.get("VTOK_CLI")
    if not p:
        lib = os.environ.get("VTOK_LIB", "")
        d = lib if os.path.isdir(lib) else os.path.dirname(lib)
        p = os.path.join(d, "vtok") if lib else ""
    return p if p and os.access(p, os.X_OK) else None


@pytest.fixture(scope="session")
def cli():
    """run(cmd, *args) -> stdout of the vtok CLI; fails the test on a non-zero exit."""
    p = _cli_path()
    if not p:
        pytest.skip("no vtok CLI to compare with: set VTOK_CLI (or VTOK_LIB beside it)")

    def run(*args, ok=True):
        r = subprocess.run([p] + [str(a) for a in args], capture_output=True, text=True,
                           timeout=120)
        if ok:
            assert r.returncode == 0, "vtok %s failed: %s" % (args[0], r.stderr.strip())
            return r.stdout
        return r
    return run


@pytest.fixture(scope="session")
def cli_json(cli):
    return lambda *a: json.loads(cli(*a))


@pytest.fixture(scope="session")
def vtok():
    import vtok as v
    try:
        v._lib.lib()
    except OSError as e:
        pytest.fail(str(e))
    return v


@pytest.fixture(scope="session")
def demo():
    with open(os.path.join(DEMO, "demo.json")) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def seed_model(tmp_path_factory):
    """A tiny random SEED tokenizer folder and its recipe file, built with the
    PyTorch references of tests/parity/check_recipes_gvt_seed.py (skipped,
    visibly, without torch): (recipe.json, model folder)."""
    torch = pytest.importorskip("torch", reason="no torch: the tiny SEED model is made with it")
    sys.path.insert(0, os.path.join(REPO, "tests", "ref"))
    import eva_ref as E
    import seed_ref as S
    work = tmp_path_factory.mktemp("seed")
    gen = torch.Generator().manual_seed(8)
    vit = E.EVAVisionTransformer(42, 14, 48, 4, 4, 4.3637)
    E.randomize(vit, gen, small=("patch_embed", "cls_token", "pos_embed"))
    m = S.make_tiny(seed=3, d=64, heads=4, ffn=128, enc_width=48, layers=4, n_query=8,
                    e_dim=16, n_embed=64, depth=2, proj_dim=48, causal=True)
    with torch.no_grad():  # codes spread like the encode layer's outputs: many ids used
        x = torch.from_numpy(np.random.default_rng(1).standard_normal((4, 3, 42, 42))
                             .astype(np.float32))
        y = m.ln_vision(vit.hidden_states(x, n_blocks=3)[-1])
        z = m.encode_task_layer(m.Qformer.bert(m.query_tokens.expand(4, -1, -1), y, m.causal))
        z = z.reshape(-1, z.shape[-1])
        m.quantize.embedding.weight.data = z.mean(0) + z.std(0) * torch.randn(
            64, z.shape[-1], generator=gen)
    sd = {"visual_encoder." + k: v for k, v in vit.state_dict().items()}
    sd.update(m.state_dict())
    model = work / "seed"
    (model / "pretrained").mkdir(parents=True)
    torch.save({"model": sd}, str(model / "pretrained" / "seed_tokenizer.pth"))
    with open(os.path.join(REPO, "recipes", "seed.json")) as f:
        r = json.load(f)
    r["encoders"][0]["config"] = {"image_size": 42, "patch_size": 14, "width": 48,
                                  "layers": 3, "heads": 4, "mlp_ratio": 4.3637}
    r["encoders"][0]["processor"]["size"] = {"height": 42, "width": 42}
    r["connector"].update({
        "qformer": {"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128,
                    "encoder_width": 48, "num_query_tokens": 8, "num_hidden_layers": 4,
                    "causal": True},
        "vq": {"hidden_size": 64, "codebook_embed_dim": 16, "n_embed": 64},
        "detok": {"hidden_size": 64, "codebook_embed_dim": 16, "n_embed": 64,
                  "num_query_tokens": 8, "blocks_depth": 2, "blocks_num_heads": 4,
                  "proj_dim": 48, "reverse_qformer": {"intermediate_size": 128}}})
    rp = work / "seed_tiny.json"
    rp.write_text(json.dumps(r, indent=1))
    return str(rp), str(model)


@pytest.fixture(scope="session")
def llava_next_model(tmp_path_factory):
    """models/tiny-llava as a LLaVA-NeXT folder (anyres: ragged token counts):
    its tower, its projector plus a random model.image_newline, and
    image_grid_pinpoints in config.json (made with torch; skipped without)."""
    torch = pytest.importorskip("torch", reason="no torch: the projector file is written with it")
    d = tmp_path_factory.mktemp("llava-next")
    os.symlink(os.path.join(TINY_LLAVA, "clip-vit-large-patch14-336"),
               str(d / "clip-vit-large-patch14-336"))
    sd = torch.load(os.path.join(TINY_LLAVA, "mm_projector.bin"), map_location="cpu")
    width = [v for k, v in sd.items() if k.endswith("2.weight")][0].shape[0]
    sd["model.image_newline"] = torch.randn(width, generator=torch.Generator().manual_seed(5))
    torch.save(sd, str(d / "mm_projector.bin"))
    (d / "config.json").write_text(json.dumps({
        "model_type": "llava", "image_aspect_ratio": "anyres", "mm_patch_merge_type":
        "spatial_unpad", "image_grid_pinpoints": [[128, 64], [64, 128], [128, 128]]}))
    return str(d)
