"""vtok.LLM against `vtok generate --json` / `vtok chat --json` /
`vtok tokenize-text` on the trained shapes models; streaming; cancellation."""
import os
import threading
import time

import numpy as np
import pytest

from conftest import DEMO, SHAPES_LLAVA, SHAPES_LLM, TINY_LLAVA


@pytest.fixture(scope="module")
def llm(vtok):
    with vtok.LLM(SHAPES_LLM, threads=2) as m:
        yield m


@pytest.fixture(scope="module")
def shapes(vtok):
    with vtok.Recipe("llava-1.5", SHAPES_LLAVA, threads=2) as r:
        yield r


def test_info(llm):
    i = llm.info
    assert i["arch"] == "llama" and i["hidden_size"] == 128 and i["vocab"] == 574
    assert i["bos"] == 1 and i["eos"] == 2 and i["has_chat_template"] is False


def test_tokenize_vs_cli(llm, cli):
    text = "What colour is the star? A red circle."
    out = cli("tokenize-text", "--llm", SHAPES_LLM, text)
    want = [int(l.split("\t")[0]) for l in out.splitlines()]
    got = llm.tokenize(text)
    assert got.dtype == np.int32 and got.tolist() == want and want[0] == 1
    assert llm.tokenize(text, add_special=False).tolist() == want[1:]
    assert llm.detokenize(got) == text
    assert llm.detokenize(got, skip_special=False).startswith("<s>")
    assert llm.token_id(llm.token_piece(want[2])) == want[2]
    assert llm.token_id("no-such-piece-anywhere") is None


GEN_CASES = [
    # (prompt, chat, CLI options, binding options)
    ("What colour is the star?", "vicuna_v1", [], {}),
    ("What colour is the star?", False, ["--temperature", "0.9", "--seed", "3"],
     dict(temperature=0.9, seed=3)),
    ("a red circle and a blue", False, ["--temperature", "1.3", "--seed", "11", "--top-k", "40",
                                       "--top-p", "0.95", "--repetition-penalty", "1.1"],
     dict(temperature=1.3, seed=11, top_k=40, top_p=0.95, repetition_penalty=1.1)),
]


@pytest.mark.parametrize("prompt, chat, cli_opts, kw", GEN_CASES)
def test_generate_ids_vs_cli(llm, cli_json, prompt, chat, cli_opts, kw):
    args = ["generate", "--llm", SHAPES_LLM, "-p", prompt, "--json", "--max-tokens", "24"]
    if chat:
        args += ["--chat", chat]
    j = cli_json(*args, *cli_opts)
    assert llm.prompt_ids(prompt, chat).tolist() == j["prompt_ids"]
    text, ids = llm.generate(prompt, max_tokens=24, chat=chat, return_ids=True, **kw)
    assert ids.tolist() == j["ids"] and len(ids) >= 1
    assert text == j["text"]
    assert llm.generate(prompt, max_tokens=24, chat=chat, **kw) == text  # repeatable


def test_generate_from_ids_and_limits(vtok, llm):
    ids = llm.prompt_ids("What colour is the star?", "vicuna_v1")
    a = llm.generate(ids, max_tokens=8, return_ids=True)[1]
    assert a.tolist() == llm.generate("What colour is the star?", max_tokens=8,
                                      chat="vicuna_v1", return_ids=True)[1].tolist()
    # no EOS stop: exactly max_tokens
    _, b = llm.generate("a", max_tokens=12, temperature=1.0, seed=1, stop_ids=[0],
                        return_ids=True)
    assert len(b) == 12
    assert llm.generate("a", max_tokens=0, return_ids=True)[1].size == 0
    with pytest.raises(ValueError):
        llm.generate("a", temperature=-1)
    with pytest.raises(vtok.VtokError) as e:
        llm.generate([1, 99999], max_tokens=4)
    assert e.value.code < 0 and "99999" in str(e.value)
    short = vtok.LLM(SHAPES_LLM, n_ctx=16)
    with pytest.raises(vtok.VtokError) as e:
        short.generate("a", max_tokens=64, stop_ids=[0])
    assert e.value.code == -8  # VTOK_ELIMIT: the context is full
    assert "16" in str(e.value) and 0 < len(e.value.ids) < 16  # the ids that fit


def test_kv_reuse_across_calls(vtok, llm):
    """A prompt that repeats the last one's prompt and answer keeps them in the
    KV cache (LLM.reused) and answers as a fresh LLM does."""
    p = llm.prompt_ids("What colour is the star?", "vicuna_v1")
    _, a = llm.generate(p, max_tokens=6, stop_ids=[0], return_ids=True)
    more = llm.tokenize(" USER: and the shape? ASSISTANT:", add_special=False)
    p2 = np.concatenate([p, a, more]).astype(np.int32)
    _, b = llm.generate(p2, max_tokens=6, return_ids=True)
    assert llm.reused == p.size + a.size - 1  # the last answer id was never run
    with vtok.LLM(SHAPES_LLM, threads=2) as fresh:
        _, c = fresh.generate(p2, max_tokens=6, return_ids=True)
        assert fresh.reused == 0
    assert b.tolist() == c.tolist()
    llm.generate("a", max_tokens=1)  # an unrelated prompt: only what matches is kept
    assert llm.reused <= 1


def test_stream_equals_generate(llm):
    kw = dict(max_tokens=40, temperature=1.2, seed=5, stop_ids=[0])
    text, ids = llm.generate("a red", return_ids=True, **kw)
    pieces = list(llm.stream("a red", **kw))
    assert len(pieces) > 5 and all(isinstance(p, str) for p in pieces)
    assert "".join(pieces) == text and len(ids) == 40
    # leaving early stops the worker; the LLM is free again right after
    it = llm.stream("a red", **kw)
    first = next(it)
    it.close()
    assert first == pieces[0]
    assert llm.generate("a red", **kw) == text


def test_stream_is_incremental(llm):
    """Pieces arrive while generation goes on, not all at the end."""
    stamps = []

    def slow_abort():  # polled before each layer: makes each token take ~2 ms
        time.sleep(0.0005)
        return False
    for p in llm.stream("a red", max_tokens=40, temperature=1.2, seed=5, stop_ids=[0],
                        abort=slow_abort):
        stamps.append(time.monotonic())
    assert len(stamps) > 5
    assert stamps[len(stamps) // 2] < stamps[-1] - 0.005


def test_abort_and_cancel(vtok, llm):
    with pytest.raises(vtok.AbortedError):
        llm.generate("a", max_tokens=64, stop_ids=[0], abort=lambda: True)
    n = []

    def later():
        n.append(1)
        return len(n) > 20  # in the middle of decoding
    with pytest.raises(vtok.AbortedError) as e:
        llm.generate("a", max_tokens=200, temperature=1.0, stop_ids=[0], abort=later)
    assert e.value.code == -9
    # a streaming consumer sees the error too
    with pytest.raises(vtok.AbortedError):
        list(llm.stream("a", max_tokens=200, stop_ids=[0], abort=later))
    # cancel() from another thread
    started = threading.Event()

    def slow():
        started.set()
        time.sleep(0.001)
        return False
    box = []

    def work():
        try:
            llm.generate("a", max_tokens=400, temperature=1.0, stop_ids=[0], abort=slow)
        except vtok.AbortedError as ex:
            box.append(ex)
    t = threading.Thread(target=work)
    t.start()
    started.wait(10)
    time.sleep(0.05)
    llm.cancel()
    t.join(30)
    assert box and "cancel" in str(box[0])
    # the LLM is usable again (and sampling is repeatable with a seed)
    assert llm.generate("a red", max_tokens=8, temperature=1.2, seed=5) == \
        llm.generate("a red", max_tokens=8, temperature=1.2, seed=5)


def test_stream_callback_error_propagates(llm):
    class Stop(Exception):
        pass

    def boom():
        raise Stop()
    with pytest.raises(Stop):
        llm.generate("a", max_tokens=10, abort=boom)


def test_chat_vs_cli_on_demo(llm, shapes, cli_json, demo):
    """Every demo question: the prompt ids and answer ids of `vtok chat --json`,
    which the shapes eval checks against PyTorch."""
    n = 0
    for scene in demo:
        png = os.path.join(DEMO, scene["image"])
        for qa in scene["qa"][:2]:
            j = cli_json("chat", "--recipe", "llava-1.5", "--model", SHAPES_LLAVA, "--llm",
                         SHAPES_LLM, "--image", png, "-p", qa["question"], "--json",
                         "--max-tokens", "16")
            text, ids = llm.chat(shapes, png, qa["question"], max_tokens=16, return_ids=True)
            assert ids.tolist() == j["ids"] == qa["pytorch_ids"], qa["question"]
            assert text == j["text"]
            n += 1
    assert n >= 10


def test_chat_stream_and_formats(vtok, llm, shapes, cli_json):
    png = os.path.join(DEMO, "scene-2000003.png")
    q = "What colour is the circle?"
    text = llm.chat(shapes, png, q, max_tokens=16)
    assert text and "".join(llm.chat(shapes, png, q, max_tokens=16, stream=True)) == text
    # raw: the question is the whole prompt, placeholders in it
    raw = "USER: <image>\n%s ASSISTANT:" % q
    j = cli_json("chat", "--recipe", "llava-1.5", "--model", SHAPES_LLAVA, "--llm", SHAPES_LLM,
                 "--image", png, "-p", raw, "--format", "raw", "--json", "--max-tokens", "16")
    assert llm.chat(shapes, png, raw, max_tokens=16, format="raw",
                    return_ids=True)[1].tolist() == j["ids"]
    # no image
    j = cli_json("chat", "--recipe", "llava-1.5", "--model", SHAPES_LLAVA, "--llm", SHAPES_LLM,
                 "-p", q, "--json", "--max-tokens", "16")
    assert llm.chat(shapes, None, q, max_tokens=16, return_ids=True)[1].tolist() == j["ids"]
    # a recipe whose tokens do not fit this LLM
    tiny = vtok.Recipe("llava-1.5", TINY_LLAVA)
    with pytest.raises(ValueError, match="width 96"):
        llm.chat(tiny, png, q)


def test_render_chat(llm):
    t = llm.render_chat([("user", "hi")], "vicuna_v1")
    assert "USER: hi" in t and t.rstrip().endswith("ASSISTANT:")
    assert llm.render_chat([{"role": "user", "content": "hi"}], "vicuna_v1") == t
    with pytest.raises(Exception):
        llm.render_chat([("user", "hi")])  # the folder has no chat_template


def test_conversation_vs_cli(vtok, llm, shapes, cli):
    """LLM.conversation = `vtok chat -i` (questions on stdin, an answer per line): the same
    answers turn after turn, the later turns reusing the KV cache (image rows included)."""
    png = os.path.join(DEMO, "scene-2000000.png")
    qs = ["What colour is the star?", "How many shapes are there?", "Is there a circle?"]
    import subprocess
    from conftest import _cli_path
    r = subprocess.run([_cli_path(), "chat", "--recipe", "llava-1.5", "--model", SHAPES_LLAVA,
                        "--llm", SHAPES_LLM, "--image", png, "-i", "--max-tokens", "12"],
                       input="\n".join(qs) + "\n", capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    want = r.stdout.splitlines()
    conv = llm.conversation(shapes, [png], max_tokens=12)
    got, reused = [], []
    for q in qs:
        got.append(conv.ask(q))
        reused.append(llm.reused)
    assert got == want and len(want) == 3
    # turn 1 may reuse another call's system prompt, never its image rows; later turns keep
    # the 64 image rows and everything before the new question
    assert reused[0] < 40 and reused[1] > reused[0] + 64 and reused[2] > reused[1]
    other = llm.conversation(shapes, [os.path.join(DEMO, "scene-2000001.png")], max_tokens=12)
    other.ask(qs[0])  # another image's rows at the same positions: not taken for these
    assert llm.reused < 40
    assert [m[0] for m in conv.messages] == ["user", "assistant"] * 3
    pieces = list(conv.ask("What colour is the star?", stream=True))
    assert "".join(pieces) == conv.messages[-1][1]
    with pytest.raises(ValueError):
        llm.conversation(None, [png])
