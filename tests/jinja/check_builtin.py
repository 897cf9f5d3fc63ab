"""The built-in templates (src/text/jinja_templates.c) against Python
re-implementations of the seed systems' own prompt building, byte for byte.

  vicuna_v1 / llava_v1 / shikra  LLaVA llava/conversation.py Conversation.get_prompt,
                                 SeparatorStyle.TWO (conv_vicuna_v1, conv_llava_v1);
                                 Shikra's vicuna_v1.1 is the same FastChat format
  gvt, gvt_vqa, gvt_caption      TencentARC/GVT modeling_gvt.py _decorate_image_embeds
                                 with the prompts of generate / predict_answers
  seed_llama_8b / _14b           AILab-CVC/SEED scripts/seed_llama_inference_{8B,14B}.py
  mova_llama3                    TempleX98/MoVA mova/conversation.py conv_mova_llama3
                                 (SeparatorStyle.MPT)

    python3 tests/jinja/check_builtin.py --tool build/jinja_render --work DIR
"""
import argparse
import json
import os
import subprocess
import sys

VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the user's questions.")
LLAVA_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
                "The assistant gives helpful, detailed, and polite answers to the human's questions.")


def two_style(system, messages, add_generation_prompt):
    """Conversation(sep_style=TWO, sep=" ", sep2="</s>", roles=("USER", "ASSISTANT")).get_prompt()
    after append_message for each turn (and (ASSISTANT, None) for the generation prompt)."""
    if messages and messages[0]["role"] == "system":
        system, messages = messages[0]["content"], messages[1:]
    names = {"user": "USER", "assistant": "ASSISTANT"}
    turns = [(names[m["role"]], m["content"]) for m in messages]
    if add_generation_prompt:
        turns.append(("ASSISTANT", None))
    seps = [" ", "</s>"]
    ret = system + seps[0]
    for i, (role, message) in enumerate(turns):
        if message:
            ret += role + ": " + message + seps[i % 2]
        else:
            ret += role + ":"
    return ret


MOVA_SYSTEM = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful "
               "language and vision assistant. You are able to understand the visual content that "
               "the user provides, and assist the user with a variety of tasks using natural language.")


def mpt_style(system, roles, sep, messages, add_generation_prompt):
    """Conversation(sep_style=MPT).get_prompt(): system + sep, then role + message + sep, or the
    bare role for an empty message. A system message replaces the text after the system header."""
    if messages and messages[0]["role"] == "system":
        head = system[:system.index("\n\n") + 2]
        system, messages = head + messages[0]["content"], messages[1:]
    turns = [(roles[m["role"]], m["content"]) for m in messages]
    if add_generation_prompt:
        turns.append((roles["assistant"], None))
    ret = system + sep
    for role, message in turns:
        ret += role + message + sep if message else role
    return ret


def gvt(prompt, n):
    # text_input_left + text_image_dummy + text_input_right
    return "<Img> " + " ".join(["I"] * n) + " " + "</Img>" + prompt


def seed_img_tokens(codes):
    return "<img>" + "".join("<img_{:05d}>".format(c) for c in codes) + "</img>"


def reference(name, ctx):
    msgs = ctx["messages"]
    gen = ctx.get("add_generation_prompt", False)
    if name in ("vicuna_v1", "shikra"):
        return two_style(VICUNA_SYSTEM, msgs, gen)
    if name == "llava_v1":
        return two_style(LLAVA_SYSTEM, msgs, gen)
    if name == "mova_llama3":
        roles = {"user": "<|start_header_id|>user<|end_header_id|>\n\n",
                 "assistant": "<|start_header_id|>assistant<|end_header_id|>\n\n"}
        return mpt_style(MOVA_SYSTEM, roles, "<|eot_id|>", msgs, gen)
    if name.startswith("gvt"):
        q = msgs[-1]["content"]
        n = ctx.get("num_image_tokens", 32)
        prompt = {"gvt": q, "gvt_vqa": f"Question: {q} Answer:",
                  "gvt_caption": "Descibe the image in detail in a sentence: This is an image of "}[name]
        return gvt(prompt, n)
    if name.startswith("seed_llama"):
        if len(msgs) != 1 or msgs[0]["role"] != "user":
            return None  # not defined by the scripts: vtok must refuse
        q = msgs[0]["content"]
        if "image_codes" in ctx:
            q = q.replace("<image>", seed_img_tokens(ctx["image_codes"]))
        bos = ctx.get("bos_token", "<s>")
        if name == "seed_llama_8b":
            s_token, e_token, sep = "USER:", "ASSISTANT:", "\n"
            return bos + s_token + " " + q + sep + e_token
        s_token, e_token, sep = "[INST] ", " [/INST]", "\n"
        return bos + s_token + q + e_token + sep
    raise KeyError(name)


def contexts():
    u = {"role": "user", "content": "<image>\nWhat is in the photo?"}
    a = {"role": "assistant", "content": "A cat on a sofa."}
    u2 = {"role": "user", "content": "And its colour? \u00e9\u4e2d \"q\" 'a' {{ x }}"}
    return [
        {"messages": [u], "add_generation_prompt": True},
        {"messages": [u], "add_generation_prompt": False},
        {"messages": [u, a, u2], "add_generation_prompt": True},
        {"messages": [u, a], "add_generation_prompt": False},
        {"messages": [{"role": "system", "content": "Be brief."}, u, a, u2], "add_generation_prompt": True},
        {"messages": [u, {"role": "assistant", "content": ""}, u2], "add_generation_prompt": True},
        {"messages": [u2], "add_generation_prompt": True, "num_image_tokens": 4},
        {"messages": [u], "add_generation_prompt": True, "image_codes": [0, 7, 8191, 12345, 99999],
         "bos_token": "<s>"},
        {"messages": [{"role": "user", "content": "Can you generate an image of a dog?"}],
         "bos_token": "<BOS>"},
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    names = subprocess.run([args.tool, "list"], capture_output=True, text=True, check=True).stdout.split()
    want = {"vicuna_v1", "llava_v1", "shikra", "gvt", "gvt_vqa", "gvt_caption", "seed_llama_8b", "seed_llama_14b", "mova_llama3"}
    fails, n = [], 0
    if set(names) != want:
        fails.append(f"built-in names {sorted(names)} != {sorted(want)}")
    for name in sorted(want & set(names)):
        for i, ctx in enumerate(contexts()):
            path = os.path.join(args.work, f"ctx{i}.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(ctx, f, ensure_ascii=False)
            p = subprocess.run([args.tool, "builtin", name, path], capture_output=True)
            ref = reference(name, ctx)
            n += 1
            if ref is None:
                if p.returncode == 0:
                    fails.append(f"{name} #{i}: undefined in the original, vtok rendered {p.stdout!r}")
                continue
            got = p.stdout.decode("utf-8") if p.returncode == 0 else None
            if got != ref:
                fails.append(f"{name} #{i}:\n    python: {ref!r}\n    vtok:   {got!r} {p.stderr.decode()}")
    # a role the originals do not have is refused
    path = os.path.join(args.work, "ctx_tool.json")
    with open(path, "w") as f:
        json.dump({"messages": [{"role": "tool", "content": "x"}]}, f)
    for name in ("vicuna_v1", "seed_llama_8b"):
        n += 1
        if subprocess.run([args.tool, "builtin", name, path], capture_output=True).returncode == 0:
            fails.append(f"{name}: a 'tool' message was accepted")
    for f in fails:
        print("FAIL", f)
    print(f"builtin templates: {n - len(fails)}/{n} match the Python re-implementations")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
