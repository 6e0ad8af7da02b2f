"""Communicators over MPI (mpi4py) for syncbn's SyncBatchNorm, and a gradient allreduce."""
import ctypes

import torch

from ._library import check, lib


class Communicator:
    """A group of MPI ranks that make collectives together (libsyncbn's sbn_comm).

    Communicator()                  all ranks of MPI.COMM_WORLD (mpi4py initializes MPI)
    Communicator(mpi4py_comm)       the ranks of any mpi4py communicator
    Communicator.self()             one rank, no MPI at all
    Collectives wait at most `timeout` seconds for their peers (set_timeout, default 600),
    then raise SyncBNError(SBN_ERR_COMM) on every rank that waited: no hang.
    """

    def __init__(self, mpi_comm=None, *, _handle=None):
        if _handle is None:
            from mpi4py import MPI  # initializes MPI on import
            if mpi_comm is None:
                mpi_comm = MPI.COMM_WORLD
            handle = ctypes.c_void_p()
            check(lib.sbn_comm_create_mpi_fortran(mpi_comm.py2f(), ctypes.byref(handle)))
            _handle = handle
        self._handle = _handle

    _world = None

    @classmethod
    def world(cls):
        """One shared communicator over MPI.COMM_WORLD, made at the first call (collective
        then: every rank must make that first call, as constructing a SyncBatchNorm with
        comm=None does, in the same order)."""
        if cls._world is None:
            cls._world = cls()
        return cls._world

    @classmethod
    def self(cls):
        handle = ctypes.c_void_p()
        check(lib.sbn_comm_create_self(ctypes.byref(handle)))
        return cls(_handle=handle)

    @property
    def handle(self):
        return self._handle

    @property
    def rank(self):
        return lib.sbn_comm_rank(self._handle)

    @property
    def size(self):
        return lib.sbn_comm_size(self._handle)

    def set_timeout(self, seconds):
        check(lib.sbn_comm_set_timeout(self._handle, float(seconds)))

    def split_groups(self, group_size):
        """Groups of group_size consecutive ranks (Apex's group_size); collective."""
        handle = ctypes.c_void_p()
        check(lib.sbn_comm_split_groups(self._handle, int(group_size), ctypes.byref(handle)))
        return Communicator(_handle=handle)

    def allreduce_sum_(self, tensor):
        """Sums a contiguous CPU float32 tensor over the ranks, in place; identical bits on every rank."""
        if tensor.dtype != torch.float32 or tensor.device.type != "cpu" or not tensor.is_contiguous():
            raise TypeError("allreduce_sum_ takes a contiguous CPU float32 tensor")
        check(lib.sbn_comm_allreduce_sum_float(self._handle, ctypes.c_void_p(tensor.data_ptr()), tensor.numel()))
        return tensor

    def __copy__(self):
        return self  # a group of processes, not a value: copies of a model share it

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        raise TypeError("a syncbn Communicator cannot be pickled (it is a live group of MPI ranks); "
                        "save the model's state_dict() instead")

    def __del__(self):
        if getattr(self, "_handle", None):
            lib.sbn_comm_destroy(self._handle)
            self._handle = None


def allreduce_gradients(module, comm):
    """Averages the .grad of every parameter of module over comm's ranks: one bucketed
    allreduce (data-parallel training without torch.distributed). Collective."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    # Every rank joins, even one without gradients: its empty bucket then
    # differs in size from the others', and every rank gets SBN_ERR_MISMATCH
    # instead of the others waiting for it.
    bucket = torch.cat([g.detach().reshape(-1).to(torch.float32) for g in grads]) if grads else torch.zeros(0)
    comm.allreduce_sum_(bucket)
    bucket /= comm.size
    offset = 0
    with torch.no_grad():
        for g in grads:
            g.copy_(bucket[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
