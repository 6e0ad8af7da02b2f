"""syncbn for Python: libsyncbn's BatchNorm and SyncBatchNorm as PyTorch modules.

    import syncbn.torch as sbn
    from syncbn.mpi import Communicator, allreduce_gradients

    comm = Communicator()                                   # MPI.COMM_WORLD via mpi4py
    model = sbn.convert_sync_batchnorm(model, comm)         # every BatchNorm -> CPU SyncBatchNorm
    ...
    loss.backward(); allreduce_gradients(model, comm); optimizer.step()

Run under `mpiexec -n P /usr/bin/python3 script.py`. The library is found at
$SYNCBN_LIBRARY, next to this package once installed, or in the build tree.
"""
from ._library import SyncBNError

__all__ = ["SyncBNError"]
