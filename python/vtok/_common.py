"""Shared pieces: image inputs, library-owned arrays copied out, callbacks.

Lifetimes. Every array the bindings return is a NumPy copy made while the
object's lock is held: the library's views (vtok_view, recipe ids) are valid
only until the next call on the same context, so a view handed out would
change or dangle under the caller. Inputs are borrowed for the duration of
one call only (the library never keeps them), so NumPy memory is passed
directly, kept alive by a local reference until the call returns.

Callbacks. A context is made with vtok_ctx_params.abort_cb / progress_cb set
to trampolines that call the Python functions given for the current call (or
nothing). The library calls them on the thread running the context, once per
step (an encoder's embedding, each block, a connector), so the GIL is taken
back briefly once per layer. abort_cb also returns nonzero after cancel()
(from any thread) or once a callback has raised: the run stops with
VTOK_EABORTED and the callback's exception, e.g. KeyboardInterrupt from
Ctrl-C, is re-raised in the caller.
"""
import contextlib
import ctypes
import os
import signal
import threading

import numpy as np

from . import _lib
from ._errors import error

_DTYPES = ("f32", "bf16", "int8", "q4")


def dtype_code(name):
    if isinstance(name, int):
        return name
    code = _lib.lib().vtok_dtype_from_name(str(name).encode())
    if code < 0:
        raise ValueError("dtype %r: expected one of %s" % (name, ", ".join(_DTYPES)))
    return code


def fspath(p):
    return os.fsencode(os.fspath(p))


def is_path(x):
    return isinstance(x, (str, bytes, os.PathLike))


def copy_view(v):
    """A NumPy copy of a vtok_view (float32, shape ne[:n_dims])."""
    shape = tuple(int(v.ne[i]) for i in range(v.n_dims))
    n = int(np.prod(shape)) if shape else 1
    if n == 0 or not v.data:
        return np.zeros(shape, np.float32)
    flat = np.ctypeslib.as_array(v.data, shape=(n,))
    return flat.reshape(shape).copy()


def _pil_to_array(img):
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def _is_pil(x):
    return type(x).__module__.startswith("PIL.") and hasattr(x, "convert") and \
        hasattr(x, "mode")


def _rgb(a, what):
    if a.dtype != np.uint8:
        raise TypeError("%s: an image array must be uint8 H x W x 3 (RGB), got dtype %s; "
                        "float arrays are pixel_values [N, 3, H, W]" % (what, a.dtype))
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError("%s: an image array must be H x W x 3 (RGB, uint8), got shape %s"
                         % (what, list(a.shape)))
    return np.ascontiguousarray(a)


def classify(images):
    """images -> ("pixels", float32 [N, C, H, W]) or ("images", [path bytes | uint8 HxWx3]).

    Accepted: a path, a PIL image, a uint8 H x W x 3 array, a uint8
    [N, H, W, 3] array, a list of paths / PIL images / uint8 arrays, or a
    floating array of pixel_values [N, C, H, W] (as an HF image processor
    makes them; converted to float32).
    """
    if isinstance(images, np.ndarray):
        if np.issubdtype(images.dtype, np.floating):
            if images.ndim != 4:
                raise ValueError("pixel_values must be 4-D [N, C, H, W], got shape %s (one "
                                 "image as an array: uint8 H x W x 3)" % list(images.shape))
            if 0 in images.shape:
                raise ValueError("pixel_values %s: empty" % list(images.shape))
            return "pixels", np.ascontiguousarray(images, dtype=np.float32)
        if images.ndim == 4:
            if images.shape[0] == 0:
                raise ValueError("no images (an empty batch)")
            return "images", [_rgb(a, "image %d" % i) for i, a in enumerate(images)]
        return "images", [_rgb(images, "image")]
    if is_path(images) or _is_pil(images):
        images = [images]
    try:
        items = list(images)
    except TypeError:
        raise TypeError("images: expected a path, a PIL image, a uint8 H x W x 3 array, "
                        "a list of those, or float pixel_values [N, C, H, W]; got %s"
                        % type(images).__name__) from None
    if not items:
        raise ValueError("no images (an empty list)")
    out = []
    for i, x in enumerate(items):
        if is_path(x):
            out.append(fspath(x))
        elif _is_pil(x):
            out.append(_pil_to_array(x))
        elif isinstance(x, np.ndarray):
            out.append(_rgb(x, "image %d" % i))
        else:
            raise TypeError("image %d: expected a path, a PIL image or a uint8 H x W x 3 "
                            "array, got %s" % (i, type(x).__name__))
    return "images", out


class ImageBatch:
    """vtok_image structs for a list from classify(): files decoded by the
    library (vtok_image_load, as the CLI does: Pillow's convert("RGB")),
    arrays borrowed. Use as a context manager: decoded images are freed."""

    def __init__(self, items):
        L = _lib.lib()
        self.n = len(items)
        self.images = (_lib.Image * self.n)()
        self.names = (ctypes.c_char_p * self.n)()
        self._loaded = []
        self._keep = []
        try:
            ip = _lib.init(_lib.ImageParams, "vtok_image_params_init")
            for i, it in enumerate(items):
                if isinstance(it, bytes):
                    st = _lib.Status()
                    rc = L.vtok_image_load(it, ctypes.byref(ip), ctypes.byref(self.images[i]),
                                           ctypes.byref(st))
                    if rc:
                        raise error(rc, _lib.text(st.msg))
                    self._loaded.append(i)
                    self.names[i] = it
                else:
                    self._keep.append(it)
                    im = self.images[i]
                    im.height, im.width = int(it.shape[0]), int(it.shape[1])
                    im.data = it.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))
                    self.names[i] = b"image %d" % i
        except BaseException:
            self.close()
            raise

    def close(self):
        L = _lib.lib()
        for i in self._loaded:
            L.vtok_image_free(ctypes.byref(self.images[i]))
        self._loaded = []
        self._keep = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Hooks:
    """abort / progress trampolines of one context (see the module docstring)."""

    def __init__(self):
        self.abort = None
        self.progress = None
        self.error = None
        self.interrupted = False
        self._cancel = threading.Event()
        self.c_abort = _lib.ABORT_CB(self._on_abort)
        self.c_progress = _lib.PROGRESS_CB(self._on_progress)

    def ctx_params(self, threads=0, mem_limit=0):
        cp = _lib.init(_lib.CtxParams, "vtok_ctx_params_init")
        cp.n_threads = int(threads or 0)
        cp.mem_limit = int(mem_limit or 0)
        cp.abort_cb = self.c_abort
        cp.progress_cb = self.c_progress
        return cp

    def _on_abort(self, user):
        if self.error is not None or self._cancel.is_set():
            return 1
        if self.abort is None:
            return 0
        try:
            return 1 if self.abort() else 0
        except BaseException as e:  # KeyboardInterrupt included: stop, re-raise later
            self.error = e
            return 1

    def _on_progress(self, user, done, total):
        if self.progress is None or self.error is not None:
            return
        try:
            self.progress(int(done), int(total))
        except BaseException as e:
            self.error = e

    def cancel(self):
        self._cancel.set()

    def _on_sigint(self, signum, frame):
        self.interrupted = True
        self._cancel.set()

    @contextlib.contextmanager
    def active(self, abort=None, progress=None):
        if abort is not None and not callable(abort):
            raise TypeError("abort must be callable (returning true to stop)")
        if progress is not None and not callable(progress):
            raise TypeError("progress must be callable as progress(done, total)")
        self.abort, self.progress, self.error = abort, progress, None
        self.interrupted = False
        self._cancel.clear()
        # Ctrl-C: Python would raise KeyboardInterrupt at the entry of the
        # next callback, outside any try, where ctypes can only print it.
        # On the main thread, with Python's own handler in place, a handler
        # that cancels the run is put there instead; check() raises
        # KeyboardInterrupt once the library has stopped.
        old = None
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            old = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            yield self
        finally:
            self.abort = self.progress = None
            if old is not None:
                signal.signal(signal.SIGINT, old)
            if self.interrupted:  # came after check(): not lost
                self.interrupted = False
                raise KeyboardInterrupt

    def check(self, rc, msg_fn):
        """After a call: re-raise a callback's exception, else raise on rc != 0."""
        if self.interrupted:
            self.interrupted = False
            raise KeyboardInterrupt
        if self.error is not None:
            e, self.error = self.error, None
            raise e
        if rc:
            msg = msg_fn()
            if rc == _lib.EABORTED and self._cancel.is_set():
                msg = (msg + " (cancel() was called)") if msg else "cancelled"
            raise error(rc, msg)


class Handle:
    """close() / with-statement / __del__ for objects owning library handles."""

    _closed = True

    def close(self):
        if not self._closed:
            self._closed = True
            self._free()

    def _free(self):
        raise NotImplementedError

    def _live(self):
        if self._closed:
            raise ValueError("%s is closed" % type(self).__name__)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
