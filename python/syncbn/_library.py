"""Loads libsyncbn and declares the C functions the package calls (ctypes)."""
import ctypes
import os

STATUS_NAMES = ["SBN_OK", "SBN_ERR_ARG", "SBN_ERR_SHAPE", "SBN_ERR_BATCH", "SBN_ERR_NOMEM", "SBN_ERR_COMM",
                "SBN_ERR_MISMATCH", "SBN_ERR_IO", "SBN_ERR_FORMAT"]


class SyncBNError(RuntimeError):
    """A libsyncbn call failed; .status is the sbn_status name, str() the library's message."""

    def __init__(self, status, message):
        self.status = STATUS_NAMES[status] if 0 <= status < len(STATUS_NAMES) else f"status {status}"
        super().__init__(f"{self.status}: {message}")


class Options(ctypes.Structure):  # sbn_bn_options
    _fields_ = [("eps", ctypes.c_double), ("momentum", ctypes.c_double), ("cumulative", ctypes.c_bool),
                ("affine", ctypes.c_bool), ("track_running_stats", ctypes.c_bool), ("fuse_relu", ctypes.c_bool)]


class Shape(ctypes.Structure):  # sbn_shape
    _fields_ = [("n", ctypes.c_int64), ("c", ctypes.c_int64), ("s", ctypes.c_int64), ("layout", ctypes.c_int),
                ("dtype", ctypes.c_int)]


NCS, NSC = 0, 1
DTYPE_F32, DTYPE_BF16, DTYPE_F16 = 0, 5, 6  # sbn_dtype


def _candidates():
    here = os.path.dirname(os.path.abspath(__file__))
    if os.environ.get("SYNCBN_LIBRARY"):
        yield os.environ["SYNCBN_LIBRARY"]
    # installed by cmake --install: <libdir>/python3/dist-packages/syncbn beside <libdir>/libsyncbn.so
    yield os.path.join(here, "..", "..", "..", "libsyncbn.so")
    # the source tree: python/syncbn beside build/
    yield os.path.join(here, "..", "..", "build", "libsyncbn.so")


def _load():
    tried = []
    for path in _candidates():
        path = os.path.normpath(path)
        if path in tried or not os.path.exists(path):
            continue
        tried.append(path)
        return ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    raise OSError("libsyncbn.so not found: set SYNCBN_LIBRARY to its path (looked beside the installed package "
                  "and in the source tree's build/)")


lib = _load()
_p = ctypes.c_void_p
_declarations = {
    "sbn_errmsg": (ctypes.c_char_p, []),
    "sbn_bn_create": (ctypes.c_int, [ctypes.c_int64, ctypes.POINTER(Options), _p, ctypes.POINTER(_p)]),
    "sbn_bn_destroy": (None, [_p]),
    "sbn_bn_forward": (ctypes.c_int, [_p, Shape, _p, _p, ctypes.c_bool]),
    "sbn_bn_backward": (ctypes.c_int, [_p, Shape, _p, _p, _p]),
    "sbn_bn_zero_grad": (None, [_p]),
    "sbn_bn_weight": (_p, [_p]),
    "sbn_bn_bias": (_p, [_p]),
    "sbn_bn_running_mean": (_p, [_p]),
    "sbn_bn_running_var": (_p, [_p]),
    "sbn_bn_grad_weight": (_p, [_p]),
    "sbn_bn_grad_bias": (_p, [_p]),
    "sbn_bn_num_batches_tracked": (ctypes.c_int64, [_p]),
    "sbn_bn_set_num_batches_tracked": (None, [_p, ctypes.c_int64]),
    "sbn_comm_create_self": (ctypes.c_int, [ctypes.POINTER(_p)]),
    "sbn_comm_create_mpi_fortran": (ctypes.c_int, [ctypes.c_int, ctypes.POINTER(_p)]),
    "sbn_comm_destroy": (None, [_p]),
    "sbn_comm_rank": (ctypes.c_int, [_p]),
    "sbn_comm_size": (ctypes.c_int, [_p]),
    "sbn_comm_set_timeout": (ctypes.c_int, [_p, ctypes.c_double]),
    "sbn_comm_split_groups": (ctypes.c_int, [_p, ctypes.c_int, ctypes.POINTER(_p)]),
    "sbn_comm_allreduce_sum_float": (ctypes.c_int, [_p, _p, ctypes.c_int64]),
}
for _name, (_result, _arguments) in _declarations.items():
    _function = getattr(lib, _name)
    _function.restype = _result
    _function.argtypes = _arguments


def check(status):
    """Raises SyncBNError with the library's message unless status is SBN_OK."""
    if status != 0:
        raise SyncBNError(status, lib.sbn_errmsg().decode(errors="replace"))
