"""Exceptions: the library's error code and its one-line message."""
from . import _lib


class VtokError(RuntimeError):
    """A vtok call failed. `code` is the negative VTOK_E* code, `name` its
    vtok_strerror() name; str(e) is the library's message (vtok_status.msg or
    the context's *_errmsg), the same line the CLI prints. A failed
    generation also has `ids`: the int32 ids made before the failure."""

    ids = None

    def __init__(self, code, message):
        self.code = int(code)
        try:
            self.name = _lib.text(_lib.lib().vtok_strerror(self.code))
        except OSError:
            self.name = "error %d" % self.code
        super().__init__(message or self.name)


class AbortedError(VtokError):
    """The run was cancelled: an abort callback returned true, cancel() was
    called, or a callback raised (that exception is chained as __cause__)."""


def error(code, message):
    return (AbortedError if code == _lib.EABORTED else VtokError)(code, message)


def check_status(ok, st):
    """Raise from a vtok_status when a call that fills one failed."""
    if not ok:
        raise error(st.code or _lib.EINVAL, _lib.text(st.msg))
