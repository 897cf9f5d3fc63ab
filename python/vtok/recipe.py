"""vtok.Recipe: a whole visual tokenizer (LLaVA-1.5, LLaVA-NeXT, GVT, COMM,
SEED, SliME, MoVA ...) as `vtok run / tokenize / detokenize` run it
(tools/cli/main.c cmd_run)."""
import ctypes
import threading

import numpy as np

from . import _lib
from ._common import Handle, Hooks, ImageBatch, classify, copy_view, dtype_code, fspath
from ._errors import check_status, error


def recipe_names():
    """The recipes built into the library (vtok_recipe_names)."""
    arr = _lib.lib().vtok_recipe_names()
    out, i = [], 0
    while arr[i]:
        out.append(_lib.text(arr[i]))
        i += 1
    return out


class Recipe(Handle):
    """A recipe loaded with its model folder.

        r = vtok.Recipe("llava-1.5", "models/tiny-llava")
        tokens = r.run("models/sample.jpg")     # [1, 64, 96] float32

    name_or_file: a shipped name (vtok.recipe_names()) or a recipe JSON file.
    model_dir: the folder the recipe's encoders and weights are relative to.
    dtype: "f32", "bf16" or "int8" for every encoder and connector Linear.
    """

    def __init__(self, name_or_file, model_dir, dtype="f32", threads=0, mem_limit=0):
        L = _lib.lib()
        self._lock = threading.Lock()
        self._hooks = Hooks()
        self.model_dir = str(model_dir)
        rp = _lib.init(_lib.RecipeParams, "vtok_recipe_params_init")
        rp.dtype = dtype_code(dtype)
        rp.n_threads = int(threads or 0)
        st = _lib.Status()
        self._r = L.vtok_recipe_load(fspath(name_or_file), fspath(model_dir), ctypes.byref(rp),
                                     ctypes.byref(st))
        check_status(self._r, st)
        self._closed = False
        self._ctx = None
        cp = self._hooks.ctx_params(threads, mem_limit)
        st = _lib.Status()
        self._ctx = L.vtok_recipe_ctx_new(self._r, ctypes.byref(cp), ctypes.byref(st))
        if not self._ctx:
            self.close()
            check_status(False, st)
        self._cp = cp
        self._ri = _lib.RecipeInfo()  # kept: vtok_llm_prompt reads the layout from it
        L.vtok_recipe_get_info(self._r, ctypes.byref(self._ri))
        i = {k: (_lib.text(getattr(self._ri, k)) if t is ctypes.c_char_p
                 else getattr(self._ri, k)) for k, t in _lib.RecipeInfo._fields_}
        del i["reserved0"]
        for k in ("can_detokenize", "needs_text", "ragged"):
            i[k] = bool(i[k])
        n = L.vtok_recipe_n_experts(self._r)
        i["experts"] = [_lib.text(L.vtok_recipe_expert_name(self._r, k)) for k in range(n)]
        self.info = i

    def _free(self):
        L = _lib.lib()
        L.vtok_recipe_ctx_free(self._ctx)
        L.vtok_recipe_free(self._r)
        self._ctx = self._r = None

    def __repr__(self):
        if self._closed:
            return "<vtok.Recipe closed>"
        i = self.info
        return "<vtok.Recipe %s on %s: %d tokens/image of width %d>" % (
            i["name"], self.model_dir, i["tokens_per_image"], i["d_out"])

    def cancel(self):
        """Stop the run going on in another thread (it raises AbortedError)."""
        self._hooks.cancel()

    def _errmsg(self):
        return _lib.text(_lib.lib().vtok_recipe_ctx_errmsg(self._ctx))

    def expert_weights(self, experts):
        """Routing weights for experts=: "none", letters ("A,C"), names, a list
        of those, or one weight per expert (as `vtok run --experts`)."""
        names = self.info["experts"]
        n = len(names)
        if not n:
            raise ValueError("experts: recipe %s has no experts to route" % self.info["name"])
        if isinstance(experts, np.ndarray) or (isinstance(experts, (list, tuple)) and experts
                                               and all(isinstance(x, (int, float)) and
                                                       not isinstance(x, bool)
                                                       for x in experts)):
            w = np.ascontiguousarray(experts, dtype=np.float32).ravel()
            if w.size != n:
                raise ValueError("experts: %d weights for %d experts" % (w.size, n))
            return w
        items = experts.split(",") if isinstance(experts, str) else list(experts)
        w = np.zeros(n, np.float32)
        if isinstance(experts, str) and experts.strip() == "none":
            return w
        for it in items:
            s = str(it).strip()
            hit = ord(s) - ord("A") if len(s) == 1 and "A" <= s < chr(ord("A") + n) else -1
            if hit < 0:
                low = [x.lower() for x in names]
                hit = low.index(s.lower()) if s.lower() in low else -1
            if hit < 0:
                raise ValueError("experts: unknown expert %r (this recipe's: %s)" % (
                    s, ", ".join("%s %s" % (chr(ord("A") + k), x) for k, x in enumerate(names))))
            w[hit] = 1
        return w

    def _run(self, images, prompt=None, experts=None, llm=None, format=None, abort=None,
             progress=None):
        """Run under the lock (held by the caller). Returns the run's image count."""
        L = _lib.lib()
        kind, items = classify(images)
        rp = _lib.init(_lib.RunParams, "vtok_run_params_init")
        keep = []
        if prompt is not None:
            keep.append(str(prompt).encode())
            rp.prompt = keep[-1]
        i = self.info
        n_images = items.shape[0] if kind == "pixels" else len(items)
        router = None
        if i["experts"]:
            if prompt is None:
                raise ValueError("recipe %s reads the question: pass prompt=" % i["name"])
            if experts is None:
                if llm is None:
                    raise ValueError(
                        "recipe %s chooses its experts with an LLM's routing answer: pass "
                        "llm= (a vtok.LLM) or experts= (letters, names, 'none' or weights), "
                        "as `vtok run --experts`" % i["name"])
                router = llm  # the routing pass runs below, on the decoded images
            else:
                w = self.expert_weights(experts)
                keep.append(w)
                rp.cond = w.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
                rp.n_cond = w.size
        elif experts is not None:
            raise ValueError("experts: recipe %s has no experts to route" % i["name"])
        if i["needs_text"]:
            if llm is None or prompt is None:
                raise ValueError("recipe %s chooses image tokens by the question: pass "
                                 "prompt= and llm= (a vtok.LLM)" % i["name"])
            ids = llm._text_ids(self, n_images, str(prompt), format)
            keep.append(ids)
            rp.llm = llm._m
            rp.text_ids = ids.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
            rp.n_text_ids = ids.size
        if kind == "pixels":
            if i["needs_text"] or i["experts"]:
                raise ValueError("recipe %s reads the question with images, not pixel_values"
                                 % i["name"])
            n, c, h, w = items.shape
            with self._hooks.active(abort, progress) as hk:
                rc = L.vtok_recipe_run(self._ctx, items.ctypes.data_as(
                    ctypes.POINTER(ctypes.c_float)), n, c, h, w, ctypes.byref(rp))
                hk.check(rc, self._errmsg)
            return n
        with ImageBatch(items) as b:
            rp.image_names = b.names
            if router is not None:
                w = self._route(b, rp, router, format, abort, progress)
                keep.append(w)
                rp.cond = w.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
                rp.n_cond = w.size
                rp.same_images = 1  # the routing pass ran the encoders on these images
            with self._hooks.active(abort, progress) as hk:
                rc = L.vtok_recipe_run_images(self._ctx, b.images, b.n, ctypes.byref(rp))
                hk.check(rc, self._errmsg)
        return len(items)

    def _route(self, b, rp, llm, format, abort, progress):
        """vtok_recipe_route: the coarse run, the LLM's routing answer
        (greedy, <= 16 ids), its expert weights; sets self.routing."""
        L = _lib.lib()
        w = np.zeros(len(self.info["experts"]), np.float32)
        rt = _lib.Routing()
        st = _lib.Status()
        fmt = None if format is None else str(format).encode()
        with llm._lock:
            llm._live()
            llm._owner = None  # its context now holds routing rows: no conversation's
            with self._hooks.active(abort, progress) as hk, llm._hooks.active(abort) as hl:
                rc = L.vtok_recipe_route(self._ctx, llm._ctx, b.images, b.n, ctypes.byref(rp),
                                         rp.prompt, fmt,
                                         w.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                         w.size, ctypes.byref(rt), ctypes.byref(st))
                hl.check(0, None)  # a callback's exception first
                hk.check(rc, lambda: _lib.text(st.msg))
        try:
            self.routing = {
                "experts": [x for x, on in zip(self.info["experts"], w) if on],
                "answer": ctypes.string_at(rt.answer).decode("utf-8", "replace"),
                "ids": list(rt.ids[:rt.n_ids]),
            }
        finally:
            L.vtok_routing_free(ctypes.byref(rt))
        return w

    def _output(self, n_images):
        """The last run's tokens: [N, T, d], or a list of [T_i, d] (ragged)."""
        L = _lib.lib()
        v = _lib.View()
        rc = L.vtok_recipe_get_output(self._ctx, ctypes.byref(v))
        if rc:
            raise error(rc, self._errmsg())
        if v.n_dims != 2:
            return copy_view(v)
        out = []
        for k in range(n_images):
            rc = L.vtok_recipe_get_image_output(self._ctx, k, ctypes.byref(v))
            if rc:
                raise error(rc, self._errmsg())
            out.append(copy_view(v))
        return out

    def _ids(self):
        L = _lib.lib()
        p = ctypes.POINTER(ctypes.c_int64)()
        n, t = ctypes.c_int64(), ctypes.c_int64()
        rc = L.vtok_recipe_get_ids(self._ctx, ctypes.byref(p), ctypes.byref(n), ctypes.byref(t))
        if rc:
            raise error(rc, self._errmsg() or "recipe %s gives no discrete ids" % self.info["name"])
        if n.value * t.value == 0:
            return np.zeros((n.value, t.value), np.int64)
        return np.ctypeslib.as_array(p, shape=(n.value * t.value,)).reshape(
            n.value, t.value).copy()

    def run(self, images, prompt=None, experts=None, llm=None, format=None, abort=None,
            progress=None):
        """The LLM-ready tokens of images: float32 [N, T, d_out], or for a
        ragged recipe (slicing, token selection: info["ragged"]) a list of
        per-image [T_i, d_out] arrays. Copies.

        images: paths, PIL images, uint8 H x W x 3 arrays (each encoder's
        processor preprocesses them as the recipe says), or float
        pixel_values [N, C, H, W] given to every encoder. prompt: the
        question, for recipes that read it (SliME with llm=, a vtok.LLM,
        and its chat format=; MoVA with experts=, or llm= and format= for
        the LLM's routing pass first, whose outcome is then in
        self.routing: experts, answer, ids). abort / progress as in
        Model.encode.
        """
        with self._lock:
            self._live()
            n = self._run(images, prompt, experts, llm, format, abort, progress)
            return self._output(n)

    __call__ = run

    def stages(self):
        """Every stage of the last run or detokenize ({name: float32 array}:
        encoder hidden states, selections, connector steps; the last is the
        output), as `vtok run --dump` writes them. Copies."""
        L = _lib.lib()
        out = {}
        with self._lock:
            self._live()
            name, v, k = ctypes.c_char_p(), _lib.View(), 0
            while L.vtok_recipe_get_stage(self._ctx, k, ctypes.byref(name), ctypes.byref(v)) == 0:
                out[_lib.text(name.value)] = copy_view(v)
                k += 1
        return out

    def tokenize(self, images, abort=None, progress=None):
        """Discrete ids of a quantising recipe (SEED): int64 [N, ids_per_image]."""
        if not self.info["ids_per_image"]:
            raise ValueError("recipe %s gives embeddings, not discrete ids: use run()"
                             % self.info["name"])
        with self._lock:
            self._live()
            self._run(images, abort=abort, progress=progress)
            return self._ids()

    def detokenize(self, ids, abort=None, progress=None):
        """ids [N, ids_per_image] (int) -> the de-tokenizer's output (SEED:
        generation embeddings [N, 77, 768]), as `vtok detokenize` writes it."""
        if not self.info["can_detokenize"]:
            raise ValueError("recipe %s has no de-tokenizer" % self.info["name"])
        a = np.asarray(ids)
        if not np.issubdtype(a.dtype, np.integer):
            raise TypeError("ids must be integers, got dtype %s" % a.dtype)
        if a.ndim == 1:
            a = a[None]
        if a.ndim != 2:
            raise ValueError("ids must be [N, ids_per_image], got shape %s" % list(a.shape))
        a = np.ascontiguousarray(a, dtype=np.int64)
        L = _lib.lib()
        with self._lock:
            self._live()
            with self._hooks.active(abort, progress) as hk:
                rc = L.vtok_recipe_detokenize(self._ctx, a.ctypes.data_as(
                    ctypes.POINTER(ctypes.c_int64)), a.shape[0], a.shape[1])
                hk.check(rc, self._errmsg)
            v = _lib.View()
            name, k = ctypes.c_char_p(), 0
            while L.vtok_recipe_get_stage(self._ctx, k + 1, ctypes.byref(name),
                                          ctypes.byref(v)) == 0:
                k += 1
            L.vtok_recipe_get_stage(self._ctx, k, ctypes.byref(name), ctypes.byref(v))
            return copy_view(v)

