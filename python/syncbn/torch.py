"""BatchNorm and a CPU SyncBatchNorm for PyTorch, computed by libsyncbn.

syncbn.torch.BatchNorm1d/2d/3d and SyncBatchNorm have exactly the parameters and
buffers of torch.nn's (weight, bias, running_mean, running_var,
num_batches_tracked), so state dicts move both ways; momentum=None is the
cumulative average; train()/eval() as in PyTorch. Inputs are CPU float32, bfloat16
or float16 tensors (16-bit ones with float32 parameters and statistics, as PyTorch's
mixed-type BatchNorm; each output within 1 ulp of the float64 result), contiguous or
channels_last (used as they are, no copy); anything else is copied to
contiguous, and GPU tensors or other dtypes raise TypeError.

SyncBatchNorm computes the batch statistics over all ranks of a
syncbn.mpi.Communicator (every rank must call it, in the same order): P ranks with
B/P samples each normalize exactly as one process with all B.

The torch tensors are the state: before each call the layer's C copy is refreshed
from them, after it the running statistics are written back in place, so a
load_state_dict, an optimizer step or a manual edit is seen at the next call.
"""
import ctypes

import torch
from torch import nn

from ._library import DTYPE_BF16, DTYPE_F16, DTYPE_F32, NCS, NSC, Options, Shape, check, lib

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "convert_sync_batchnorm",
           "revert_sync_batchnorm"]


_NO_ELEMENTS = (ctypes.c_float * 1)()  # the address passed for a tensor without elements


def _pointer(tensor):
    """The tensor's data. A tensor with no elements (a SyncBN rank with no samples) has data_ptr() 0,
    which the library refuses as NULL; it gets a valid address that is never read or written."""
    if tensor.numel() == 0:
        return ctypes.cast(_NO_ELEMENTS, ctypes.c_void_p)
    return ctypes.c_void_p(tensor.data_ptr())


def _c_floats(address, count):
    """A torch view of `count` C floats at address (valid while the layer lives)."""
    return torch.frombuffer((ctypes.c_float * count).from_address(address), dtype=torch.float32)


def _layout(x):
    """(memory layout, tensor to pass): NCS for contiguous, NSC for channels_last, else a contiguous copy."""
    if x.is_contiguous():
        return NCS, x
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return NSC, x
    if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
        return NSC, x
    return NCS, x.contiguous()


_DTYPES = {torch.float32: DTYPE_F32, torch.bfloat16: DTYPE_BF16, torch.float16: DTYPE_F16}


def _shape(x, layout):
    spatial = 1
    for size in x.shape[2:]:
        spatial *= size
    return Shape(x.shape[0], x.shape[1], spatial, layout, _DTYPES[x.dtype])


def _same_layout_as(tensor, layout, like):
    """tensor in the memory layout of `like` (channels_last when layout is NSC)."""
    if layout == NCS:
        return tensor.contiguous()
    fmt = torch.channels_last if like.dim() == 4 else torch.channels_last_3d
    return tensor.contiguous(memory_format=fmt)


class _BatchNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, module, training):
        layout, x = _layout(x)
        y = torch.empty_like(x)
        module._push_state()
        check(lib.sbn_bn_forward(module._layer, _shape(x, layout), _pointer(x), _pointer(y), bool(training)))
        module._pull_running_stats()
        module._calls += 1
        ctx.module, ctx.call, ctx.layout = module, module._calls, layout
        ctx.save_for_backward(x)
        return y

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        module = ctx.module
        if module._calls != ctx.call:
            raise RuntimeError("syncbn: this BatchNorm module was called again before the backward of an earlier "
                               "call; the layer keeps the statistics of its last call only")
        dy = _same_layout_as(dy.to(x.dtype), ctx.layout, x)
        dx = torch.empty_like(x)
        lib.sbn_bn_zero_grad(module._layer)
        check(lib.sbn_bn_backward(module._layer, _shape(x, ctx.layout), _pointer(x), _pointer(dy), _pointer(dx)))
        grad_weight = grad_bias = None
        if module.affine:
            channels = module.num_features
            grad_weight = _c_floats(lib.sbn_bn_grad_weight(module._layer), channels).clone()
            grad_bias = _c_floats(lib.sbn_bn_grad_bias(module._layer), channels).clone()
        return dx, grad_weight, grad_bias, None, None


class _SyncBNBase(nn.modules.batchnorm._BatchNorm):
    """torch.nn's BatchNorm state (parameters, buffers, options) over a libsyncbn layer."""

    _dims = None  # accepted input dimensions; None: any of 2 to 5

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, comm=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.comm = comm
        self._layer = None
        self._calls = 0

    def _check_input_dim(self, x):
        allowed = self._dims or (2, 3, 4, 5)
        if x.dim() not in allowed:
            raise ValueError(f"expected {' or '.join(f'{d}D' for d in allowed)} input (got {x.dim()}D input)")

    def _options(self):
        return Options(eps=float(self.eps), momentum=0.0 if self.momentum is None else float(self.momentum),
                       cumulative=self.momentum is None, affine=bool(self.affine),
                       track_running_stats=bool(self.track_running_stats))

    def _communicator_handle(self):
        return None

    def _make_layer(self):
        options = self._options()
        if self._layer is not None and self._layer_options == (options.eps, options.momentum, options.cumulative):
            return
        if self._layer is not None:  # eps or momentum changed since: a new layer with the new options
            lib.sbn_bn_destroy(self._layer)
        handle = ctypes.c_void_p()
        check(lib.sbn_bn_create(self.num_features, ctypes.byref(options), self._communicator_handle(),
                                ctypes.byref(handle)))
        self._layer, self._layer_options = handle, (options.eps, options.momentum, options.cumulative)

    def _push_state(self):
        """The torch tensors -> the C layer (weight, bias, running statistics, count)."""
        channels = self.num_features
        with torch.no_grad():
            if self.affine:
                _c_floats(lib.sbn_bn_weight(self._layer), channels).copy_(self.weight.detach())
                _c_floats(lib.sbn_bn_bias(self._layer), channels).copy_(self.bias.detach())
            if self.track_running_stats:
                _c_floats(lib.sbn_bn_running_mean(self._layer), channels).copy_(self.running_mean)
                _c_floats(lib.sbn_bn_running_var(self._layer), channels).copy_(self.running_var)
                lib.sbn_bn_set_num_batches_tracked(self._layer, int(self.num_batches_tracked))

    def _pull_running_stats(self):
        """The C layer's running statistics -> the torch buffers, in place."""
        if not self.track_running_stats:
            return
        channels = self.num_features
        with torch.no_grad():
            self.running_mean.copy_(_c_floats(lib.sbn_bn_running_mean(self._layer), channels))
            self.running_var.copy_(_c_floats(lib.sbn_bn_running_var(self._layer), channels))
            self.num_batches_tracked.fill_(lib.sbn_bn_num_batches_tracked(self._layer))

    def forward(self, x):
        self._check_input_dim(x)
        if x.device.type != "cpu":
            raise TypeError(f"syncbn runs on the CPU; the input is on {x.device}")
        if x.dtype not in _DTYPES:
            raise TypeError(f"syncbn takes float32, bfloat16 or float16 inputs; got {x.dtype}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"expected {self.num_features} channels, got input of shape {tuple(x.shape)}")
        self._make_layer()
        return _BatchNormFunction.apply(x, self.weight, self.bias, self, self.training)

    def __getstate__(self):
        """For copy.deepcopy and pickling (torch.save(model)): everything but the C layer, which a copy
        makes afresh at its first call (the torch tensors are the state)."""
        state = self.__dict__.copy()
        state["_layer"], state["_calls"] = None, 0
        state.pop("_layer_options", None)
        return state

    def __del__(self):
        if getattr(self, "_layer", None) is not None:
            lib.sbn_bn_destroy(self._layer)
            self._layer = None


class BatchNorm1d(_SyncBNBase):
    """torch.nn.BatchNorm1d over libsyncbn: (N, C) or (N, C, L)."""
    _dims = (2, 3)


class BatchNorm2d(_SyncBNBase):
    """torch.nn.BatchNorm2d over libsyncbn: (N, C, H, W), contiguous or channels_last."""
    _dims = (4,)


class BatchNorm3d(_SyncBNBase):
    """torch.nn.BatchNorm3d over libsyncbn: (N, C, D, H, W), contiguous or channels_last_3d."""
    _dims = (5,)


class SyncBatchNorm(_SyncBNBase):
    """torch.nn.SyncBatchNorm for CPU tensors, over MPI: batch statistics over all ranks of
    `comm` (a syncbn.mpi.Communicator; None: Communicator.world(), shared, over MPI.COMM_WORLD).
    Training calls are collective; eval with running statistics is local."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, comm=None):
        if comm is None:  # made here, on every rank alike: never inside a forward that one rank runs alone
            from .mpi import Communicator
            comm = Communicator.world()
        super().__init__(num_features, eps, momentum, affine, track_running_stats, comm)

    def _communicator_handle(self):
        return self.comm.handle


def convert_sync_batchnorm(module, comm=None):
    """Every BatchNorm*d in module (torch.nn's or syncbn's) becomes a SyncBatchNorm over comm,
    keeping its parameters (the same Parameter objects), buffers and mode; returns the module
    (a new one when module itself is a BatchNorm), as torch.nn.SyncBatchNorm.convert_sync_batchnorm."""
    output = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, SyncBatchNorm):
        output = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats, comm)
        _carry_state(module, output)
    for name, child in module.named_children():
        output.add_module(name, convert_sync_batchnorm(child, comm))
    return output


class _BatchNormXd(nn.modules.batchnorm._BatchNorm):
    """torch.nn's BatchNorm for any input of 2 to 5 dimensions: what a SyncBatchNorm reverts to."""

    def _check_input_dim(self, x):
        if x.dim() < 2 or x.dim() > 5:
            raise ValueError(f"expected 2D to 5D input (got {x.dim()}D input)")


def revert_sync_batchnorm(module):
    """The conversion back (pytorch#41081): every SyncBatchNorm becomes a torch.nn BatchNorm
    (of any dimension) with the same parameters, buffers and mode."""
    output = module
    if isinstance(module, SyncBatchNorm):
        output = _BatchNormXd(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        _carry_state(module, output)
    for name, child in module.named_children():
        output.add_module(name, revert_sync_batchnorm(child))
    return output


def _carry_state(source, target):
    if source.affine:
        with torch.no_grad():
            target.weight = source.weight
            target.bias = source.bias
    if source.track_running_stats:
        target.running_mean = source.running_mean
        target.running_var = source.running_var
        target.num_batches_tracked = source.num_batches_tracked
    target.train(source.training)
    if hasattr(source, "qconfig"):
        target.qconfig = source.qconfig
