"""vtok.Model: a vision encoder (CLIP, SigLIP, DINOv2, ViT, ...) from a
Hugging Face folder, as `vtok encode` runs it (tools/cli/main.c cmd_encode)."""
import ctypes
import threading

import numpy as np

from . import _lib
from ._common import Handle, Hooks, ImageBatch, classify, copy_view, dtype_code, fspath
from ._errors import check_status, error


class Model(Handle):
    """A vision encoder loaded from a Hugging Face model folder.

        m = vtok.Model("models/tiny-clip")
        out = m.encode("models/sample.jpg", layers="all")
        out["last_hidden_state"].shape     # (1, 65, 64)

    dtype: "f32" (exact), "bf16" or "int8". threads: the context's threads
    (0: one per CPU). mem_limit: bytes of working memory one encode may plan
    (0: the library default). Calls on one Model are serialized by a lock;
    the GIL is released while the library computes.
    """

    def __init__(self, path, dtype="f32", threads=0, mem_limit=0):
        L = _lib.lib()
        self._lock = threading.Lock()
        self._hooks = Hooks()
        self.path = str(path)
        mp = _lib.init(_lib.ModelParams, "vtok_model_params_init")
        mp.dtype = dtype_code(dtype)
        mp.n_threads = int(threads or 0)
        st = _lib.Status()
        self._m = L.vtok_model_load(fspath(path), ctypes.byref(mp), ctypes.byref(st))
        check_status(self._m, st)
        self._closed = False
        self._ctx = None
        self._proc = None
        cp = self._hooks.ctx_params(threads, mem_limit)
        st = _lib.Status()
        self._ctx = L.vtok_ctx_new(self._m, ctypes.byref(cp), ctypes.byref(st))
        if not self._ctx:
            self.close()
            check_status(False, st)
        self._cp = cp  # the trampolines must outlive the context
        info = _lib.ModelInfo()
        L.vtok_model_get_info(self._m, ctypes.byref(info))
        self.info = {k: (_lib.text(getattr(info, k)) if t is ctypes.c_char_p
                         else getattr(info, k)) for k, t in _lib.ModelInfo._fields_}
        self.info["has_pooler"] = bool(self.info["has_pooler"])
        self.info["any_size"] = bool(self.info["any_size"])
        self.info["kernels"] = _lib.text(L.vtok_kernel_name())

    def _free(self):
        L = _lib.lib()
        L.vtok_processor_free(self._proc)
        L.vtok_ctx_free(self._ctx)
        L.vtok_model_free(self._m)
        self._proc = self._ctx = self._m = None

    def __repr__(self):
        if self._closed:
            return "<vtok.Model closed>"
        i = self.info
        return "<vtok.Model %s %s, %d layers, hidden %d, %s>" % (
            self.path, i["arch"], i["n_layers"], i["hidden_size"], i["compute_dtype"])

    def cancel(self):
        """Stop the encode running on another thread (it raises AbortedError)."""
        self._hooks.cancel()

    def preprocess(self, images):
        """pixel_values float32 [N, 3, H, W] of images (paths, PIL images, uint8
        H x W x 3 arrays) through the folder's preprocessor_config.json,
        bit-exact with the Hugging Face image processor on Pillow images."""
        kind, items = classify(images)
        if kind == "pixels":
            return items.copy()
        with self._lock:
            self._live()
            return self._preprocess(items)

    def _preprocess(self, items):
        L = _lib.lib()
        if not self._proc:
            st = _lib.Status()
            self._proc = L.vtok_processor_load(fspath(self.path), ctypes.byref(st))
            check_status(self._proc, st)
        px = ctypes.POINTER(ctypes.c_float)()
        shape = (ctypes.c_int64 * 4)()
        st = _lib.Status()
        with ImageBatch(items) as b:
            ip = _lib.init(_lib.ImageParams, "vtok_image_params_init")
            rc = L.vtok_preprocess_batch(self._proc, None, b.images, b.n, ctypes.byref(ip),
                                         ctypes.byref(px), shape, ctypes.byref(st))
        if rc:
            raise error(rc, _lib.text(st.msg))
        try:
            n = shape[0] * shape[1] * shape[2] * shape[3]
            return np.ctypeslib.as_array(px, shape=(n,)).reshape(tuple(shape)).copy()
        finally:
            L.vtok_free(px)

    def encode(self, images, layers=None, abort=None, progress=None):
        """Run the encoder; a dict of float32 NumPy arrays (copies), batch first:

            last_hidden_state  [N, tokens, hidden]
            pooler_output      [N, hidden]          (models with a pooler)
            image_embeds       [N, projection_dim]  (models with a projection)
            hidden_states      {layer: [N, tokens, hidden]} for the layers kept,
                               keyed 0..n_layers (0 = embeddings, as HF)

        images: paths, PIL images, uint8 H x W x 3 arrays (preprocessed as
        the folder's preprocessor_config.json says), or float pixel_values
        [N, C, H, W]. layers: None, "all", or a list of hidden-state indices
        (HF indexing; negative counts from the end). abort(): polled before
        every step, true stops the run (AbortedError); progress(done, total)
        after each step.
        """
        L = _lib.lib()
        kind, items = classify(images)
        ep = _lib.init(_lib.EncodeParams, "vtok_encode_params_init")
        keep = None
        if isinstance(layers, str):
            if layers != "all":
                raise ValueError("layers: None, 'all' or a list of ints, got %r" % layers)
            ep.all_layers = 1
        elif layers is not None:
            ls = [int(x) for x in ([layers] if isinstance(layers, int) else layers)]
            keep = (ctypes.c_int * max(len(ls), 1))(*ls)
            ep.n_layers = len(ls)
            ep.layers = keep
        with self._lock:
            self._live()
            px = items if kind == "pixels" else self._preprocess(items)
            n, c, h, w = px.shape
            with self._hooks.active(abort, progress) as hk:
                rc = L.vtok_encode(self._ctx, px.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                   n, c, h, w, ctypes.byref(ep))
                hk.check(rc, lambda: _lib.text(L.vtok_ctx_errmsg(self._ctx)))
            out = {}
            v = _lib.View()
            for name, which in (("last_hidden_state", _lib.OUT_LAST_HIDDEN),
                                ("pooler_output", _lib.OUT_POOLER),
                                ("image_embeds", _lib.OUT_IMAGE_EMBEDS)):
                if L.vtok_get_output(self._ctx, which, 0, ctypes.byref(v)) == 0:
                    out[name] = copy_view(v)
            hs = {}
            for layer in range(self.info["n_layers"] + 1):
                if L.vtok_get_output(self._ctx, _lib.OUT_HIDDEN_STATE, layer,
                                     ctypes.byref(v)) == 0:
                    hs[layer] = copy_view(v)
            if hs:
                out["hidden_states"] = hs
        return out
