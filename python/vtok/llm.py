"""vtok.LLM: the LLaMA-family runtime (LLaMA-2 / Vicuna, LLaMA-3, Mistral,
Qwen2) as `vtok generate` and `vtok chat` run it (tools/cli/llm.c:
prompt_ids, render_prompt, cli_text_ids, cli_chat, answer)."""
import ctypes
import queue
import threading

import numpy as np

from . import _lib
from ._common import Handle, Hooks, dtype_code, fspath
from ._errors import VtokError, check_status, error

_DONE = object()


def _ids_array(ids):
    a = np.asarray(ids)
    if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
        raise ValueError("ids must be a 1-D sequence of integers, got %s of shape %s"
                         % (a.dtype, list(a.shape)))
    return np.ascontiguousarray(a, dtype=np.int32)


def _i32p(a):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))


class LLM(Handle):
    """A decoder LLM from a Hugging Face folder (config.json, safetensors,
    tokenizer.json, tokenizer_config.json).

        llm = vtok.LLM("models/shapes/llava/llm")
        llm.generate("USER: hi ASSISTANT:", max_tokens=16)
        for piece in llm.stream("...", max_tokens=64):
            print(piece, end="", flush=True)
        llm.chat(recipe, "scene.png", "What colour is the star?")

    dtype: "f32", "bf16", "int8" or "q4". n_ctx: positions one sequence
    may hold (0: min(max_tokens, 4096)). One context is kept and reset for
    every call; calls on one LLM are serialized by a lock, the GIL is
    released while the library computes.
    """

    def __init__(self, path, dtype="f32", threads=0, n_ctx=0, mem_limit=0):
        L = _lib.lib()
        self._lock = threading.Lock()
        self._hooks = Hooks()
        self.path = str(path)
        mp = _lib.init(_lib.ModelParams, "vtok_model_params_init")
        mp.dtype = dtype_code(dtype)
        mp.n_threads = int(threads or 0)
        st = _lib.Status()
        self._m = L.vtok_llm_load(fspath(path), ctypes.byref(mp), ctypes.byref(st))
        check_status(self._m, st)
        self._closed = False
        self._ctx = None
        self.reused = 0  # prompt positions the last call kept from the call before
        self._owner = None  # the Conversation whose rows the context holds, if any
        cp = self._hooks.ctx_params(threads, mem_limit)
        st = _lib.Status()
        self._ctx = L.vtok_llm_ctx_new(self._m, int(n_ctx), ctypes.byref(cp), ctypes.byref(st))
        if not self._ctx:
            self.close()
            check_status(False, st)
        self._cp = cp
        li = _lib.LLMInfo()
        L.vtok_llm_get_info(self._m, ctypes.byref(li))
        i = {k: (_lib.text(getattr(li, k)) if t is ctypes.c_char_p else getattr(li, k))
             for k, t in _lib.LLMInfo._fields_}
        del i["reserved0"]
        i["has_chat_template"] = bool(i["has_chat_template"])
        self.info = i

    def _free(self):
        L = _lib.lib()
        L.vtok_llm_ctx_free(self._ctx)
        L.vtok_llm_free(self._m)
        self._ctx = self._m = None

    def __repr__(self):
        if self._closed:
            return "<vtok.LLM closed>"
        i = self.info
        return "<vtok.LLM %s %s, %d layers, hidden %d, vocab %d, %s>" % (
            self.path, i["arch"], i["n_layers"], i["hidden_size"], i["vocab"],
            i["compute_dtype"])

    def cancel(self):
        """Stop the generation going on in another thread (AbortedError there)."""
        self._hooks.cancel()

    # ------------------------------------------------------------- text --

    def tokenize(self, text, add_special=True):
        """Token ids (int32) of text, as Hugging Face tokenizers encode it
        (add_special: the post-processor, e.g. BOS)."""
        self._live()
        L = _lib.lib()
        b = str(text).encode("utf-8")
        st = _lib.Status()
        n = L.vtok_tokenize(self._m, b, len(b), int(bool(add_special)), None, 0,
                            ctypes.byref(st))
        check_status(n >= 0, st)
        out = np.zeros(n, np.int32)
        if n:
            got = L.vtok_tokenize(self._m, b, len(b), int(bool(add_special)), _i32p(out), n,
                                  ctypes.byref(st))
            check_status(got == n, st)
        return out

    def detokenize(self, ids, skip_special=True):
        """The text of ids (skip_special: leave out BOS / EOS and the like)."""
        self._live()
        L = _lib.lib()
        a = _ids_array(ids)
        st = _lib.Status()
        n = L.vtok_detokenize(self._m, _i32p(a), a.size, int(bool(skip_special)), None, 0,
                              ctypes.byref(st))
        check_status(n >= 0, st)
        buf = ctypes.create_string_buffer(n + 1)
        got = L.vtok_detokenize(self._m, _i32p(a), a.size, int(bool(skip_special)), buf,
                                n + 1, ctypes.byref(st))
        check_status(got == n, st)
        return buf.raw[:n].decode("utf-8", "replace")

    def token_piece(self, id):
        """The vocabulary entry of id as stored ("▁the"), or None."""
        self._live()
        p = _lib.lib().vtok_token_piece(self._m, int(id))
        return None if p is None else _lib.text(p)

    def token_id(self, piece):
        """The id of a vocabulary entry or added token, or None."""
        self._live()
        i = _lib.lib().vtok_token_id(self._m, str(piece).encode("utf-8"))
        return None if i < 0 else int(i)

    def render_chat(self, messages, format=None, add_generation_prompt=True):
        """A conversation as prompt text: messages are (role, content) pairs
        or {"role", "content"} dicts; format None uses the folder's
        chat_template, a name a built-in format (vtok.chat_formats())."""
        self._live()
        L = _lib.lib()
        msgs = list(messages)
        arr = (_lib.ChatMsg * max(len(msgs), 1))()
        keep = []
        for k, m in enumerate(msgs):
            role, content = (m["role"], m["content"]) if isinstance(m, dict) else m
            keep += [str(role).encode("utf-8"), str(content).encode("utf-8")]
            arr[k].role, arr[k].content = keep[-2], keep[-1]
        out = ctypes.c_void_p()
        st = _lib.Status()
        rc = L.vtok_chat_render(self._m, None if format is None else str(format).encode(),
                                arr, len(msgs), int(bool(add_generation_prompt)),
                                ctypes.byref(out), ctypes.byref(st))
        if rc:
            raise error(rc, _lib.text(st.msg))
        try:
            return ctypes.string_at(out.value).decode("utf-8", "replace")
        finally:
            L.vtok_free(out)

    def _add_bos(self, name, text):
        """Whether the tokenizer's BOS still goes in front of a rendered prompt:
        the library's rule (vtok_chat_add_special: a folder's template writes
        it as text; a built-in format gets it unless its text starts with it,
        mova_llama3 always, as MoVA's prompts begin with two)."""
        return bool(_lib.lib().vtok_chat_add_special(
            self._m, None if name is None else str(name).encode(), text.encode("utf-8")))

    def prompt_ids(self, prompt, chat=False):
        """The ids generate() evaluates for prompt (as `vtok generate -p TEXT
        [--chat [FORMAT]]`): chat=True wraps it as a user turn in the
        folder's chat template, a string names a built-in format."""
        if not isinstance(prompt, str):
            return _ids_array(prompt)
        if not chat:
            return self.tokenize(prompt, True)
        name = None if chat is True else str(chat)
        text = self.render_chat([("user", prompt)], name, True)
        return self.tokenize(text, self._add_bos(name, text))

    # ------------------------------------------------------- generation --

    def _gen_params(self, max_tokens, temperature, top_k, top_p, min_p, repetition_penalty,
                    seed, stop, stop_ids, keep):
        gp = _lib.init(_lib.GenParams, "vtok_gen_params_init")
        if max_tokens is not None:
            if int(max_tokens) < 0:
                raise ValueError("max_tokens must be >= 0")
            gp.max_tokens = int(max_tokens)
        t = float(temperature or 0.0)
        if t < 0:
            raise ValueError("temperature must be >= 0 (0: greedy)")
        gp.greedy = int(t == 0.0)  # as `vtok generate --temperature`: 0 is argmax
        gp.temperature = 1.0 if t == 0.0 else t
        gp.top_k = int(top_k)
        gp.top_p = float(top_p)
        gp.min_p = float(min_p)
        gp.repetition_penalty = float(repetition_penalty)
        gp.seed = int(seed)
        if stop:
            ss = [stop] if isinstance(stop, str) else list(stop)
            arr = (ctypes.c_char_p * len(ss))(*[str(s).encode("utf-8") for s in ss])
            keep.append(arr)
            gp.stop_strings = arr
            gp.n_stop_strings = len(ss)
        if stop_ids is not None:
            a = _ids_array(stop_ids)
            keep.append(a)
            gp.stop_ids = _i32p(a)
            gp.n_stop_ids = a.size
        return gp

    def _errmsg(self):
        return _lib.text(_lib.lib().vtok_llm_errmsg(self._ctx))

    def _run(self, batch, gp, on_piece, abort, owner=None):
        """Evaluate batch as the whole prompt and generate: the ids (int32).
        What the context still holds of it from the last call (its prompt
        and answer) is kept (vtok_llm_eval_reuse; image rows never match):
        self.reused says how many positions. on_piece(text) -> true stops.
        Caller holds the lock."""
        L = _lib.lib()
        hk = self._hooks
        cb = None
        if on_piece is not None:
            def on_token(user, tid, ptr, n):
                if hk.error is not None:
                    return 1
                try:
                    return 1 if on_piece(ctypes.string_at(ptr, n).decode("utf-8", "replace")) \
                        else 0
                except BaseException as e:
                    hk.error = e
                    return 1
            cb = _lib.ON_TOKEN_CB(on_token)
            gp.on_token = cb
        cap = max(int(gp.max_tokens), 1)
        out = np.zeros(cap, np.int32)
        n_out = ctypes.c_int64(0)
        reused = ctypes.c_int64(0)
        # image rows held count as this prompt's only for the conversation that put
        # them there (its images never change); any other call's rows never match
        same = owner is not None and self._owner is owner
        self._owner = owner
        with hk.active(abort, None):
            rc = L.vtok_llm_eval_reuse(self._ctx, ctypes.byref(batch), int(same),
                                       ctypes.byref(reused))
            hk.check(rc, self._errmsg)
            self.reused = reused.value
            rc = L.vtok_llm_generate(self._ctx, ctypes.byref(gp), _i32p(out), gp.max_tokens,
                                     ctypes.byref(n_out))
            try:
                hk.check(rc, self._errmsg)
            except VtokError as e:  # e.g. the context filled up: what was made before
                e.ids = out[:n_out.value].copy()
                raise
        return out[:n_out.value].copy()

    def _generate_job(self, prompt, chat, kw):
        keep = []
        gp = self._gen_params(keep=keep, **kw)
        ids = self.prompt_ids(prompt, chat)
        if ids.size == 0:
            raise ValueError("the prompt has no tokens")

        def job(on_piece, abort):
            b = _lib.LLMBatch()
            b.n, b.ids = ids.size, _i32p(ids)
            with self._lock:
                self._live()
                out = self._run(b, gp, on_piece, abort)
            return self.detokenize(out), out
        return job

    def generate(self, prompt, max_tokens=256, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0,
                 repetition_penalty=1.0, seed=0, stop=None, stop_ids=None, chat=False,
                 return_ids=False, abort=None):
        """Generate after prompt (a string, or ids); the new text (special
        tokens skipped), or (text, ids int32) with return_ids. As `vtok
        generate`: greedy when temperature is 0; sampling with top_k, top_p,
        min_p, repetition_penalty and seed otherwise; stops at the EOS (or
        one of stop_ids, which is kept), a stop string (kept in the text),
        max_tokens or the context's end (VtokError "... n_ctx"). chat: see
        prompt_ids. abort(): polled before each layer; true stops
        (AbortedError)."""
        job = self._generate_job(prompt, chat, dict(
            max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
            min_p=min_p, repetition_penalty=repetition_penalty, seed=seed, stop=stop,
            stop_ids=stop_ids))
        text, ids = job(None, abort)
        return (text, ids) if return_ids else text

    def stream(self, prompt, max_tokens=256, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0,
               repetition_penalty=1.0, seed=0, stop=None, stop_ids=None, chat=False,
               abort=None):
        """generate() as an iterator of text pieces, each yielded as soon as
        the library completes it (whole UTF-8 characters). "".join() of the
        pieces is generate()'s text. Generation runs on a worker thread;
        leaving the loop early stops it."""
        job = self._generate_job(prompt, chat, dict(
            max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
            min_p=min_p, repetition_penalty=repetition_penalty, seed=seed, stop=stop,
            stop_ids=stop_ids))
        return self._stream(job, abort)

    def _stream(self, job, abort):
        q = queue.Queue()
        stop = threading.Event()

        def on_piece(s):
            q.put(s)
            return stop.is_set()

        def work():
            try:
                q.put((_DONE, job(on_piece, abort), None))
            except BaseException as e:  # handed to the consumer
                q.put((_DONE, None, e))

        def gen():
            t = threading.Thread(target=work, name="vtok-stream", daemon=True)
            t.start()
            sent = []
            try:
                while True:
                    item = q.get()
                    if isinstance(item, tuple) and item[0] is _DONE:
                        if item[2] is not None:
                            raise item[2]
                        text, so_far = item[1][0], "".join(sent)
                        # bytes held back as an incomplete character at the end
                        if len(text) > len(so_far) and text.startswith(so_far):
                            yield text[len(so_far):]
                        return
                    if item:
                        sent.append(item)
                        yield item
            finally:
                if t.is_alive():
                    stop.set()
                    self._hooks.cancel()
                    t.join()
        return gen()

    # ------------------------------------------------------------- chat --

    def _chat_prompt(self, recipe, format, question, T, image_ids):
        """vtok_chat_prompt, the library's one-question prompt (the CLI's and
        the server's: placeholders, "\\n" but for seed_llama formats, the
        template or vicuna_v1, "raw", the BOS rule): an LLMBatch the caller
        frees (vtok_llm_batch_free)."""
        L = _lib.lib()
        n = len(T)
        Ta = np.ascontiguousarray(T, dtype=np.int64)
        b = _lib.LLMBatch()
        st = _lib.Status()
        rc = L.vtok_chat_prompt(
            self._m, ctypes.byref(recipe._ri), None if format is None else str(format).encode(),
            str(question).encode("utf-8"), n,
            Ta.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)) if n else None,
            image_ids.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))
            if image_ids is not None else None, ctypes.byref(b), None, ctypes.byref(st))
        if rc:
            raise error(rc, _lib.text(st.msg))
        return b

    def _prompt_batch(self, recipe, text, add_special, T, image_ids):
        """vtok_llm_prompt: an LLMBatch the caller frees (vtok_llm_batch_free)."""
        L = _lib.lib()
        n = len(T)
        Ta = np.ascontiguousarray(T, dtype=np.int64)
        b = _lib.LLMBatch()
        st = _lib.Status()
        rc = L.vtok_llm_prompt(
            self._m, ctypes.byref(recipe._ri), text.encode("utf-8"), n,
            Ta.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)) if n else None,
            image_ids.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))
            if image_ids is not None else None,
            int(bool(add_special)), ctypes.byref(b), ctypes.byref(st))
        if rc:
            raise error(rc, _lib.text(st.msg))
        return b

    def _text_ids(self, recipe, n_images, question, format):
        """The prompt's ids without the image positions (llm.c cli_text_ids):
        what a recipe that selects by the question (SliME) reads."""
        self._live()
        b = self._chat_prompt(recipe, format, question, [1] * n_images, None)
        try:
            ids = np.zeros(max(b.n, 1), np.int32)
            n = _lib.lib().vtok_llm_batch_text_ids(
                ctypes.byref(b), ids.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), ids.size)
            return ids[:n].copy()
        finally:
            _lib.lib().vtok_llm_batch_free(ctypes.byref(b))

    def _chat_job(self, recipe, images, question, format, experts, kw):
        keep = []
        gp = self._gen_params(keep=keep, **kw)
        ri = recipe.info
        question = str(question)

        def job(on_piece, abort):
            L = _lib.lib()
            rows, ids, T = None, None, []
            with recipe._lock:
                recipe._live()
                self._live()
                if images is not None:
                    if not ri["id_format"] and ri["d_out"] != self.info["hidden_size"]:
                        raise ValueError("recipe %s gives tokens of width %d, the LLM takes %d"
                                         % (ri["name"], ri["d_out"], self.info["hidden_size"]))
                    reads_q = ri["needs_text"] or bool(ri["experts"])
                    n = recipe._run(images, question if reads_q else None, experts,
                                    self if ri["needs_text"] or (ri["experts"] and experts is None)
                                    else None, format, abort)
                    T, ids, rows = _spliced(recipe, n)
            b = self._chat_prompt(recipe, format, question, T, ids)
            try:
                if rows is not None:
                    b.embeds = rows.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
                with self._lock:
                    self._live()
                    out_ids = self._run(b, gp, on_piece, abort)
            finally:
                L.vtok_llm_batch_free(ctypes.byref(b))
            return self.detokenize(out_ids), out_ids
        return job

    def chat(self, recipe, images, question, max_tokens=256, format=None, stream=False,
             return_ids=False, experts=None, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0,
             repetition_penalty=1.0, seed=0, stop=None, stop_ids=None, abort=None):
        """Ask about images, as `vtok chat --recipe ... --image ... -p
        QUESTION`: the recipe's tokens (a vtok.Recipe) are spliced into the
        prompt where its layout says (one placeholder per image before the
        question, in the folder's chat template, vicuna_v1 without one;
        format: a built-in format name, "template", or "raw" when question
        is the whole prompt with its placeholders). images: as
        Recipe.run (None: no image). Routing recipes (MoVA): this LLM's
        routing pass picks the experts first (recipe.routing says which and
        why), unless experts= gives them.
        Returns the answer's text, (text, ids) with return_ids, or an
        iterator of pieces with stream=True."""
        job = self._chat_job(recipe, images, question, format, experts, dict(
            max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
            min_p=min_p, repetition_penalty=repetition_penalty, seed=seed, stop=stop,
            stop_ids=stop_ids))
        if stream:
            return self._stream(job, abort)
        text, ids = job(None, abort)
        return (text, ids) if return_ids else text

    def conversation(self, recipe=None, images=None, format=None, **gen):
        """A multi-turn chat about images, as `vtok chat -i`: conv.ask(q)
        answers each question in turn; the images' placeholders go before
        the first question, the recipe runs once, and every turn keeps the
        conversation so far in the KV cache (only the new turn is run).
        gen: defaults for ask() (max_tokens, temperature, ...). Recipes
        whose tokens depend on the question (SliME, MoVA) are refused, as
        in `vtok chat -i`."""
        return Conversation(self, recipe, images, format, gen)

    def image_ids(self, recipe, ids):
        """The image codes written in generated ids (a SEED-style recipe's
        id_format tokens, in order; other ids skipped): int64."""
        self._live()
        L = _lib.lib()
        a = _ids_array(ids)
        st = _lib.Status()
        n = L.vtok_llm_image_ids(self._m, ctypes.byref(recipe._ri), _i32p(a), a.size, None, 0,
                                 ctypes.byref(st))
        check_status(n >= 0, st)
        out = np.zeros(max(n, 1), np.int64)
        got = L.vtok_llm_image_ids(self._m, ctypes.byref(recipe._ri), _i32p(a), a.size,
                                   out.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)), n,
                                   ctypes.byref(st))
        check_status(got == n, st)
        return out[:n]


def chat_formats():
    """Names of the built-in chat formats (vtok_chat_template_name)."""
    L = _lib.lib()
    out, i = [], 0
    while True:
        n = L.vtok_chat_template_name(i)
        if not n:
            return out
        out.append(_lib.text(n))
        i += 1


def _spliced(recipe, n):
    """After a run of n images: each image's token count, and the ids
    (id_format recipes) or the rows [sum, d] the prompt splices in."""
    if recipe.info["id_format"]:
        ids = np.ascontiguousarray(recipe._ids().ravel())
        return [ids.size // n] * n, ids, None
    out = recipe._output(n)
    parts = list(out) if isinstance(out, list) else [x for x in out]
    return ([p.shape[0] for p in parts], None,
            np.ascontiguousarray(np.concatenate(parts, 0), np.float32))


class Conversation:
    """LLM.conversation(): the messages so far (conv.messages, (role, text)
    pairs) and the images' rows, computed at the first ask()."""

    def __init__(self, llm, recipe, images, format, gen):
        if images is not None and recipe is None:
            raise ValueError("images need a recipe (a vtok.Recipe) to turn them into tokens")
        if recipe is not None and images is not None and (recipe.info["needs_text"] or
                                                           recipe.info["experts"]):
            raise ValueError("recipe %s chooses its tokens by each question: use LLM.chat, "
                             "one question at a time" % recipe.info["name"])
        self.llm, self.recipe, self.images, self.format = llm, recipe, images, format
        self.gen = dict(gen)
        self.messages = []
        self._T, self._ids, self._rows = [], None, None
        self._ready = images is None

    def _name(self):
        n = _lib.lib().vtok_chat_format_name(
            self.llm._m, None if self.format is None else str(self.format).encode())
        return None if n is None else n.decode()

    def _image_rows(self, abort):
        r = self.recipe
        with r._lock:
            r._live()
            ri = r.info
            if not ri["id_format"] and ri["d_out"] != self.llm.info["hidden_size"]:
                raise ValueError("recipe %s gives tokens of width %d, the LLM takes %d"
                                 % (ri["name"], ri["d_out"], self.llm.info["hidden_size"]))
            n = r._run(self.images, None, None, None, self.format, abort)
            self._T, self._ids, self._rows = _spliced(r, n)
        self._ready = True

    def _job(self, question, kw):
        llm = self.llm
        keep = []
        gp = llm._gen_params(keep=keep, **kw)

        def job(on_piece, abort):
            if not self._ready:
                self._image_rows(abort)
            name = self._name()
            msgs = []
            for k, (role, text) in enumerate(self.messages + [("user", str(question))]):
                if k == 0 and self._T:  # the images' placeholders before the first question
                    sep = "" if name and name.startswith("seed_llama") else "\n"
                    text = self.recipe.info["placeholder"] * len(self._T) + sep + text
                msgs.append((role, text))
            text = llm.render_chat(msgs, name, True)
            add = llm._add_bos(name, text)
            L = _lib.lib()
            if self.recipe is not None:
                b = llm._prompt_batch(self.recipe, text, add, self._T, self._ids)
                own = True
            else:
                ids = llm.tokenize(text, add)
                keep.append(ids)
                b = _lib.LLMBatch()
                b.n, b.ids = ids.size, _i32p(ids)
                own = False
            try:
                if self._rows is not None:
                    b.embeds = self._rows.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
                with llm._lock:
                    llm._live()
                    out_ids = llm._run(b, gp, on_piece, abort, owner=self)
            finally:
                if own:
                    L.vtok_llm_batch_free(ctypes.byref(b))
            answer = llm.detokenize(out_ids)
            self.messages += [("user", str(question)), ("assistant", answer)]
            return answer, out_ids
        return job

    def ask(self, question, stream=False, return_ids=False, abort=None, **gen):
        """The answer to the next question (text; (text, ids) with
        return_ids; an iterator of pieces with stream=True: a stream left
        early keeps the answer made so far as the turn). gen overrides the
        conversation's generation defaults."""
        kw = dict(max_tokens=256, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0,
                  repetition_penalty=1.0, seed=0, stop=None, stop_ids=None)
        kw.update(self.gen)
        kw.update(gen)
        job = self._job(question, kw)
        if stream:
            return self.llm._stream(job, abort)
        text, ids = job(None, abort)
        return (text, ids) if return_ids else text
