"""ctypes declarations of include/vtok.h and the loader of libvtok.

Every struct here mirrors the C declaration field for field, in order, with
the C types ctypes lays out the same way (int -> c_int, int64_t -> c_int64,
size_t -> c_size_t, pointers -> c_void_p or POINTER). Params structs are never
filled by hand: the library's vtok_*_params_init(&p, sizeof p) zeroes them,
writes its defaults and sets p.size (vtok.h, "Params structs and ABI": the
way bindings that cannot call the inline *_default_params() must do it).
tests/python/test_abi.py compiles a C program against vtok.h and checks every
size and offset here against the compiler's.

The library is found, in order: $VTOK_LIB (the file, or a folder holding
libvtok.so), a libvtok.so* next to this package, ctypes.util.find_library.
It is loaded on first use, so `import vtok` works without it.

ctypes releases the GIL around every call through a CDLL, so the long calls
(model loads, vtok_encode, recipe runs, LLM eval and generate) let other
Python threads run; the callbacks below take the GIL back only for the time
they run (once per encoder layer, once per generated token).
"""
import ctypes
import ctypes.util
import glob
import os
import threading

from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_double, c_float,
                    c_int, c_int32, c_int64, c_size_t, c_uint8, c_uint64, c_void_p)

# ------------------------------------------------------------------ codes --

OK, EINVAL, ENOMEM, EIO, EFORMAT, EUNSUPPORTED, EMISSING, ESHAPE, ELIMIT, EABORTED = (
    0, -1, -2, -3, -4, -5, -6, -7, -8, -9)

OUT_LAST_HIDDEN, OUT_POOLER, OUT_IMAGE_EMBEDS, OUT_HIDDEN_STATE = 0, 1, 2, 3

# ---------------------------------------------------------------- structs --


class Status(Structure):
    _fields_ = [("code", c_int), ("msg", c_char * 512)]


class ModelParams(Structure):
    _fields_ = [("size", c_size_t), ("use_mmap", c_int), ("dtype", c_int),
                ("n_threads", c_int), ("reserved0", c_int), ("threadpool", c_void_p)]


class ModelInfo(Structure):
    _fields_ = [("arch", c_char_p), ("model_type", c_char_p), ("weight_dtype", c_char_p),
                ("compute_dtype", c_char_p), ("hidden_size", c_int64),
                ("intermediate_size", c_int64), ("n_layers", c_int64), ("n_heads", c_int64),
                ("patch_size", c_int64), ("image_size", c_int64), ("n_channels", c_int64),
                ("n_prefix_tokens", c_int64), ("projection_dim", c_int64),
                ("has_pooler", c_int), ("any_size", c_int), ("hidden_act", c_char_p),
                ("layer_norm_eps", c_double), ("n_params", c_int64)]


ABORT_CB = CFUNCTYPE(c_int, c_void_p)
PROGRESS_CB = CFUNCTYPE(None, c_void_p, c_int64, c_int64)
LOG_CB = CFUNCTYPE(None, c_void_p, c_int, c_char_p)


class CtxParams(Structure):
    _fields_ = [("size", c_size_t), ("n_threads", c_int), ("reserved0", c_int),
                ("threadpool", c_void_p), ("mem_limit", c_int64), ("abort_cb", ABORT_CB),
                ("progress_cb", PROGRESS_CB), ("log_cb", LOG_CB), ("user", c_void_p)]


class EncodeParams(Structure):
    _fields_ = [("size", c_size_t), ("all_layers", c_int), ("n_layers", c_int),
                ("layers", POINTER(c_int))]


class View(Structure):
    _fields_ = [("data", POINTER(c_float)), ("n_dims", c_int), ("ne", c_int64 * 4)]


class Image(Structure):
    _fields_ = [("width", c_int64), ("height", c_int64), ("data", POINTER(c_uint8))]


class ImageParams(Structure):
    _fields_ = [("size", c_size_t), ("max_width", c_int64), ("max_height", c_int64),
                ("max_pixels", c_int64), ("exif_orientation", c_int),
                ("jpeg_fast_scale", c_int), ("jpeg_target", c_int64)]


class RecipeParams(Structure):
    _fields_ = [("size", c_size_t), ("use_mmap", c_int), ("dtype", c_int),
                ("n_threads", c_int), ("reserved0", c_int), ("threadpool", c_void_p)]


class RecipeInfo(Structure):
    _fields_ = [("name", c_char_p), ("description", c_char_p), ("n_encoders", c_int64),
                ("tokens_per_image", c_int64), ("d_out", c_int64), ("max_images", c_int64),
                ("placeholder", c_char_p), ("before", c_char_p), ("after", c_char_p),
                ("ids_per_image", c_int64), ("vocab", c_int64), ("can_detokenize", c_int),
                ("reserved0", c_int), ("fill", c_char_p), ("id_format", c_char_p),
                ("needs_text", c_int), ("ragged", c_int)]


class RunParams(Structure):
    _fields_ = [("size", c_size_t), ("prompt", c_char_p), ("cond", POINTER(c_float)),
                ("n_cond", c_int64), ("image_names", POINTER(c_char_p)), ("llm", c_void_p),
                ("text_ids", POINTER(c_int32)), ("n_text_ids", c_int64),
                ("same_images", c_int), ("reserved0", c_int)]


class LLMInfo(Structure):
    _fields_ = [("arch", c_char_p), ("compute_dtype", c_char_p), ("vocab", c_int64),
                ("hidden_size", c_int64), ("n_layers", c_int64), ("n_heads", c_int64),
                ("n_kv_heads", c_int64), ("head_dim", c_int64), ("max_tokens", c_int64),
                ("bos", c_int32), ("eos", c_int32), ("has_chat_template", c_int),
                ("reserved0", c_int)]


class ChatMsg(Structure):
    _fields_ = [("role", c_char_p), ("content", c_char_p)]


class LLMBatch(Structure):
    _fields_ = [("n", c_int64), ("ids", POINTER(c_int32)), ("embeds", POINTER(c_float)),
                ("embed_pos", POINTER(c_int64)), ("n_embeds", c_int64)]


class Routing(Structure):
    _fields_ = [("answer", c_void_p), ("ids", c_int32 * 16), ("n_ids", c_int64),
                ("prompt_ids", POINTER(c_int32)), ("n_prompt", c_int64),
                ("recipe_ms", c_double), ("llm_ms", c_double)]


# text is not NUL-terminated: POINTER(c_char) + len, read with ctypes.string_at
ON_TOKEN_CB = CFUNCTYPE(c_int, c_void_p, c_int32, POINTER(c_char), c_size_t)
ON_TOKEN_SEQ_CB = CFUNCTYPE(c_int, c_void_p, c_int64, c_int32, POINTER(c_char), c_size_t)


class GenParams(Structure):
    _fields_ = [("size", c_size_t), ("max_tokens", c_int64), ("greedy", c_int),
                ("temperature", c_float), ("top_k", c_int64), ("top_p", c_float),
                ("min_p", c_float), ("repetition_penalty", c_float), ("reserved0", c_int),
                ("seed", c_uint64), ("stop_ids", POINTER(c_int32)), ("n_stop_ids", c_int64),
                ("stop_strings", POINTER(c_char_p)), ("n_stop_strings", c_int64),
                ("on_token", ON_TOKEN_CB), ("user", c_void_p),
                ("on_token_seq", ON_TOKEN_SEQ_CB)]


# name -> ctypes type, for the ABI test
STRUCTS = {
    "vtok_status": Status, "vtok_model_params": ModelParams, "vtok_model_info": ModelInfo,
    "vtok_ctx_params": CtxParams, "vtok_encode_params": EncodeParams, "vtok_view": View,
    "vtok_image": Image, "vtok_image_params": ImageParams, "vtok_recipe_params": RecipeParams,
    "vtok_recipe_info": RecipeInfo, "vtok_run_params": RunParams, "vtok_llm_info": LLMInfo,
    "vtok_chat_msg": ChatMsg, "vtok_llm_batch": LLMBatch, "vtok_gen_params": GenParams,
    "vtok_routing": Routing,
}

# -------------------------------------------------------------- functions --

P = c_void_p  # opaque handles: vtok_model *, vtok_ctx *, ...
_SIGS = {
    "vtok_strerror": (c_char_p, [c_int]),
    "vtok_version": (c_char_p, []),
    "vtok_kernel_name": (c_char_p, []),
    "vtok_dtype_from_name": (c_int, [c_char_p]),
    "vtok_free": (None, [c_void_p]),
    # params init
    "vtok_model_params_init": (None, [POINTER(ModelParams), c_size_t]),
    "vtok_ctx_params_init": (None, [POINTER(CtxParams), c_size_t]),
    "vtok_encode_params_init": (None, [POINTER(EncodeParams), c_size_t]),
    "vtok_image_params_init": (None, [POINTER(ImageParams), c_size_t]),
    "vtok_recipe_params_init": (None, [POINTER(RecipeParams), c_size_t]),
    "vtok_run_params_init": (None, [POINTER(RunParams), c_size_t]),
    "vtok_gen_params_init": (None, [POINTER(GenParams), c_size_t]),
    # models
    "vtok_model_load": (P, [c_char_p, POINTER(ModelParams), POINTER(Status)]),
    "vtok_model_free": (None, [P]),
    "vtok_model_get_info": (c_int, [P, POINTER(ModelInfo)]),
    "vtok_ctx_new": (P, [P, POINTER(CtxParams), POINTER(Status)]),
    "vtok_ctx_free": (None, [P]),
    "vtok_ctx_errmsg": (c_char_p, [P]),
    "vtok_encode": (c_int, [P, POINTER(c_float), c_int64, c_int64, c_int64, c_int64,
                            POINTER(EncodeParams)]),
    "vtok_get_output": (c_int, [P, c_int, c_int, POINTER(View)]),
    # images and processors
    "vtok_image_load": (c_int, [c_char_p, POINTER(ImageParams), POINTER(Image),
                                POINTER(Status)]),
    "vtok_image_free": (None, [POINTER(Image)]),
    "vtok_processor_load": (P, [c_char_p, POINTER(Status)]),
    "vtok_processor_free": (None, [P]),
    "vtok_preprocess_batch": (c_int, [P, POINTER(c_char_p), POINTER(Image), c_int64,
                                      POINTER(ImageParams), POINTER(POINTER(c_float)),
                                      POINTER(c_int64), POINTER(Status)]),
    # recipes
    "vtok_recipe_names": (POINTER(c_char_p), []),
    "vtok_recipe_load": (P, [c_char_p, c_char_p, POINTER(RecipeParams), POINTER(Status)]),
    "vtok_recipe_free": (None, [P]),
    "vtok_recipe_get_info": (c_int, [P, POINTER(RecipeInfo)]),
    "vtok_recipe_ctx_new": (P, [P, POINTER(CtxParams), POINTER(Status)]),
    "vtok_recipe_ctx_free": (None, [P]),
    "vtok_recipe_ctx_errmsg": (c_char_p, [P]),
    "vtok_recipe_run": (c_int, [P, POINTER(c_float), c_int64, c_int64, c_int64, c_int64,
                                POINTER(RunParams)]),
    "vtok_recipe_run_images": (c_int, [P, POINTER(Image), c_int64, POINTER(RunParams)]),
    "vtok_recipe_get_output": (c_int, [P, POINTER(View)]),
    "vtok_recipe_get_image_output": (c_int, [P, c_int64, POINTER(View)]),
    "vtok_recipe_get_ids": (c_int, [P, POINTER(POINTER(c_int64)), POINTER(c_int64),
                                    POINTER(c_int64)]),
    "vtok_recipe_detokenize": (c_int, [P, POINTER(c_int64), c_int64, c_int64]),
    "vtok_recipe_get_stage": (c_int, [P, c_int, POINTER(c_char_p), POINTER(View)]),
    "vtok_recipe_n_experts": (c_int64, [P]),
    "vtok_recipe_expert_name": (c_char_p, [P, c_int64]),
    "vtok_recipe_route": (c_int, [P, P, POINTER(Image), c_int64, POINTER(RunParams), c_char_p,
                                  c_char_p, POINTER(c_float), c_int64, POINTER(Routing),
                                  POINTER(Status)]),
    "vtok_routing_free": (None, [POINTER(Routing)]),
    # LLM
    "vtok_llm_load": (P, [c_char_p, POINTER(ModelParams), POINTER(Status)]),
    "vtok_llm_free": (None, [P]),
    "vtok_llm_get_info": (c_int, [P, POINTER(LLMInfo)]),
    "vtok_tokenize": (c_int64, [P, c_char_p, c_size_t, c_int, POINTER(c_int32), c_int64,
                                POINTER(Status)]),
    "vtok_detokenize": (c_int64, [P, POINTER(c_int32), c_int64, c_int, c_char_p, c_size_t,
                                  POINTER(Status)]),
    "vtok_token_piece": (c_char_p, [P, c_int32]),
    "vtok_token_id": (c_int32, [P, c_char_p]),
    "vtok_chat_render": (c_int, [P, c_char_p, POINTER(ChatMsg), c_int64, c_int,
                                 POINTER(c_void_p), POINTER(Status)]),
    "vtok_chat_template_name": (c_char_p, [c_int]),
    "vtok_chat_add_special": (c_int, [P, c_char_p, c_char_p]),
    "vtok_chat_format_name": (c_char_p, [P, c_char_p]),
    "vtok_llm_ctx_new": (P, [P, c_int64, POINTER(CtxParams), POINTER(Status)]),
    "vtok_llm_ctx_free": (None, [P]),
    "vtok_llm_reset": (None, [P]),
    "vtok_llm_n_past": (c_int64, [P]),
    "vtok_llm_errmsg": (c_char_p, [P]),
    "vtok_llm_eval": (c_int, [P, POINTER(LLMBatch)]),
    "vtok_llm_eval_reuse": (c_int, [P, POINTER(LLMBatch), c_int, POINTER(c_int64)]),
    "vtok_llm_prompt": (c_int, [P, POINTER(RecipeInfo), c_char_p, c_int64, POINTER(c_int64),
                                POINTER(c_int64), c_int, POINTER(LLMBatch), POINTER(Status)]),
    "vtok_llm_batch_free": (None, [POINTER(LLMBatch)]),
    "vtok_chat_prompt": (c_int, [P, POINTER(RecipeInfo), c_char_p, c_char_p, c_int64,
                                 POINTER(c_int64), POINTER(c_int64), POINTER(LLMBatch),
                                 POINTER(c_void_p), POINTER(Status)]),
    "vtok_llm_batch_text_ids": (c_int64, [POINTER(LLMBatch), POINTER(c_int32), c_int64]),
    "vtok_llm_image_ids": (c_int64, [P, POINTER(RecipeInfo), POINTER(c_int32), c_int64,
                                     POINTER(c_int64), c_int64, POINTER(Status)]),
    "vtok_llm_generate": (c_int, [P, POINTER(GenParams), POINTER(c_int32), c_int64,
                                  POINTER(c_int64)]),
}

_lock = threading.Lock()
_lib = None
_path = None


def _candidates():
    env = os.environ.get("VTOK_LIB")
    if env:
        if os.path.isdir(env):
            yield from sorted(glob.glob(os.path.join(env, "libvtok.so*")), key=len)
            yield from sorted(glob.glob(os.path.join(env, "libvtok*.dylib")), key=len)
        else:
            yield env
        return  # an explicit choice is not second-guessed
    here = os.path.dirname(os.path.abspath(__file__))
    yield from sorted(glob.glob(os.path.join(here, "libvtok.so*")), key=len)
    yield from sorted(glob.glob(os.path.join(here, "libvtok*.dylib")), key=len)
    found = ctypes.util.find_library("vtok")
    if found:
        yield found


def lib():
    """The loaded library, its functions declared. Raises OSError saying where it looked."""
    global _lib, _path
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        tried = []
        for cand in _candidates():
            try:
                L = ctypes.CDLL(cand)
            except OSError as e:
                tried.append("%s (%s)" % (cand, e))
                continue
            missing = [n for n in _SIGS if not hasattr(L, n)]
            if missing:
                tried.append("%s (too old: lacks %s)" % (cand, ", ".join(missing[:4])))
                continue
            for name, (res, args) in _SIGS.items():
                f = getattr(L, name)
                f.restype = res
                f.argtypes = args
            _lib, _path = L, cand
            return L
        raise OSError("vtok: cannot load libvtok: set VTOK_LIB to the library built by "
                      "the vtok_shared target (e.g. build/libvtok.so); tried: %s"
                      % ("; ".join(tried) if tried else "$VTOK_LIB unset, nothing next to "
                         "the package, find_library('vtok') found nothing"))


def path():
    lib()
    return _path


def text(b):
    """A library string (bytes or None) as str."""
    return b.decode("utf-8", "replace") if b else ""


def init(cls, fn):
    """A params struct as the library's *_params_init leaves it."""
    p = cls()
    getattr(lib(), fn)(ctypes.byref(p), ctypes.sizeof(p))
    return p
