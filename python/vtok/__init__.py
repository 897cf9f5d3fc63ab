"""vtok: visual tokenizers of multimodal LLMs, from Python.

ctypes bindings over libvtok (the shared library the vtok_shared CMake target
builds): nothing to compile at install. NumPy arrays in and out; every array
returned is a copy the caller owns; errors raise VtokError with the library's
one-line message; the GIL is released while the library computes.

    import vtok
    m = vtok.Model("models/tiny-clip")                 # a vision encoder
    feats = m.encode(["a.jpg", "b.png"], layers=[-2])  # dict of arrays

    r = vtok.Recipe("llava-1.5", "models/shapes/llava")
    tokens = r.run("scene.png")                        # [1, 64, 128]

    llm = vtok.LLM("models/shapes/llava/llm")
    print(llm.chat(r, "scene.png", "What colour is the star?", max_tokens=16))
    for piece in llm.stream("Hello", max_tokens=32):
        print(piece, end="")

The library is found via $VTOK_LIB (the file or its folder), then a
libvtok.so next to this package, then the system's library path.
"""
from . import _lib
from ._errors import AbortedError, VtokError
from .llm import LLM, Conversation, chat_formats
from .model import Model
from .recipe import Recipe, recipe_names

__version__ = "0.2.0"

__all__ = ["Model", "Recipe", "LLM", "Conversation", "VtokError", "AbortedError", "recipe_names",
           "chat_formats", "library_version", "kernel_name", "library_path"]


def library_version():
    """The loaded libvtok's version string."""
    return _lib.text(_lib.lib().vtok_version())


def kernel_name():
    """The kernel set in use: "ref", "avx2", "avx512"."""
    return _lib.text(_lib.lib().vtok_kernel_name())


def library_path():
    """Where libvtok was loaded from."""
    return _lib.path()
