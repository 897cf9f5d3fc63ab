"""PyTorch reference of CLIP's text tower and zero-shot scores, following
transformers modeling_clip.py (CLIPTextEmbeddings, CLIPTextTransformer with
its causal mask, CLIPModel.get_text_features / get_image_features /
forward's logits_per_image), and a tiny random CLIPModel folder with the
official tensor names (text_model.*, vision_model.*, text_projection,
visual_projection, logit_scale) plus a CLIP-format tokenizer.json
(tests/text/clip_tok.py).

Used by tests/blocks/clip_text_parity.py.
"""
import json
import os
import sys

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "text"))
import hf_vision as hv  # noqa: E402
import safetensors_io  # noqa: E402
from clip_tok import make_clip_tokenizer  # noqa: E402

CAPTIONS = [
    "a photo of a cat", "a photo of a dog", "a photo of a bird on a tree",
    "two cats sleeping on a sofa", "a red car parked in the street", "the quick brown fox",
    "an astronaut riding a horse", "a bowl of fruit: apples, pears and 3 bananas",
    "don't panic! it's only a test", "What's this? A diagram of the model.",
]


class Cfg:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class CLIPTextTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embeddings = nn.Module()
        self.embeddings.token_embedding = nn.Embedding(c.vocab_size, c.hidden_size)
        self.embeddings.position_embedding = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.encoder = hv.CLIPEncoder(c)
        self.final_layer_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.eos_token_id = c.eos_token_id

    def layer(self, L, x, mask):
        # CLIPEncoderLayer with eager_attention_forward + the causal mask
        h = L.layer_norm1(x)
        a = L.self_attn
        q = hv.split_heads(a.q_proj(h), a.num_heads)
        k = hv.split_heads(a.k_proj(h), a.num_heads)
        v = hv.split_heads(a.v_proj(h), a.num_heads)
        w = torch.matmul(q, k.transpose(-1, -2)) * a.scale + mask
        w = torch.softmax(w, dim=-1, dtype=torch.float32)
        o = torch.matmul(w, v)
        b, hh, t, hd = o.shape
        x = x + a.out_proj(o.transpose(1, 2).reshape(b, t, hh * hd))
        return x + L.mlp(L.layer_norm2(x))

    def forward(self, ids):
        T = ids.shape[-1]
        if T > self.c.max_position_embeddings:
            raise ValueError("Sequence length must be less than max_position_embeddings")
        x = self.embeddings.token_embedding(ids) + self.embeddings.position_embedding(torch.arange(T))
        mask = torch.full((T, T), torch.finfo(torch.float32).min).triu(1)
        for L in self.encoder.layers:
            x = self.layer(L, x, mask)
        last = self.final_layer_norm(x)
        # pooled row: transformers main's rule (see src/models/clip_text.c)
        if bool(torch.all(ids.max(dim=-1).values == 49407)):
            pos = ids.to(torch.int).argmax(dim=-1)
        else:
            pos = (ids.to(torch.int) == self.eos_token_id).int().argmax(dim=-1)
        pooled = last[torch.arange(last.shape[0]), pos]
        return last, pooled


class CLIPModel(nn.Module):
    def __init__(self, tc, vc, projection_dim):
        super().__init__()
        self.text_model = CLIPTextTransformer(tc)
        self.vision_model = hv.CLIPVisionTransformer(vc)
        self.text_projection = nn.Linear(tc.hidden_size, projection_dim, bias=False)
        self.visual_projection = nn.Linear(vc.hidden_size, projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(2.6592))

    def get_text_features(self, ids):
        last, pooled = self.text_model(ids)
        return last, pooled, self.text_projection(pooled)

    def get_image_features(self, pixels):
        return self.visual_projection(self.vision_model(pixels)["pooler_output"])

    def logits_per_image(self, pixels, ids_list):
        img = self.get_image_features(pixels)
        txt = torch.cat([self.get_text_features(i[None])[2] for i in ids_list])
        norm = lambda t: t / torch.pow(torch.sum(torch.pow(t, 2), dim=-1, keepdim=True), 0.5)
        img, txt = norm(img), norm(txt)
        return (torch.matmul(txt, img.t()) * self.logit_scale.exp()).t()


def make_model(folder, seed=0, act="quick_gelu", legacy_eos=False):
    """Write a tiny random CLIPModel folder; returns the torch model."""
    os.makedirs(folder, exist_ok=True)
    tok, tcfg = make_clip_tokenizer(CAPTIONS, 200)
    vocab = len(tok["model"]["vocab"])
    eos = tok["model"]["vocab"]["<|endoftext|>"]
    text_config = {"vocab_size": vocab + 3, "hidden_size": 32, "intermediate_size": 48,
                   "num_hidden_layers": 2, "num_attention_heads": 4,
                   "max_position_embeddings": 77, "hidden_act": act, "layer_norm_eps": 1e-5,
                   "bos_token_id": eos - 1, "eos_token_id": 2 if legacy_eos else eos,
                   "pad_token_id": 1}
    vision_config = {"hidden_size": 24, "intermediate_size": 40, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "image_size": 32, "patch_size": 8,
                     "num_channels": 3, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
    cfg = {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": 16,
           "logit_scale_init_value": 2.6592, "text_config": text_config,
           "vision_config": vision_config, "torch_dtype": "float32"}
    tc = Cfg(**text_config)
    vc = Cfg(**vision_config)
    torch.manual_seed(seed)
    m = CLIPModel(tc, vc, 16)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("logit_scale"):
                p.fill_(2.6592)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    tensors = {k: v.detach().clone().contiguous() for k, v in m.state_dict().items()}
    safetensors_io.write_model(folder, tensors)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump(tcfg, f)
    pre = {"crop_size": {"height": 32, "width": 32}, "do_center_crop": True,
           "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
           "image_mean": [0.48145466, 0.4578275, 0.40821073],
           "image_processor_type": "CLIPImageProcessor",
           "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3,
           "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 32}}
    with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
        json.dump(pre, f, indent=1)
    m.eval()
    return m
