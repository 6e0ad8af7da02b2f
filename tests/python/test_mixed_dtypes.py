#!/usr/bin/python3
"""syncbn.torch's modules on bfloat16 and float16 inputs (float32 parameters and buffers).

The library widens the 16-bit inputs exactly, computes the statistics in float64
and rounds each output once, so every output element must be within 1 ulp (of
the 16-bit type, at the reference value) of the result computed in float64.
The reference is torch.nn.functional.batch_norm in float64 on x.double() with
the module's float32 weight, bias and running statistics converted to double.
Checked, for bfloat16 and float16:

1. BatchNorm1d (N,C) and (N,C,L), BatchNorm2d contiguous and channels_last (and
   an input with a large offset: cancellation), BatchNorm3d contiguous and
   channels_last_3d, affine with a random weight and a nonzero random bias, over
   train, train, eval steps: the output's dtype and memory format are the
   input's and each element within 1 ulp; running_mean/var after a train step
   the reference's at float32 tolerance (1e-6 relative); x.grad (16-bit)
   within 1 ulp of the float64 autograd gradient for the same upstream gradient
   (widened); weight.grad/bias.grad (float32) within 1e-5 of the reference
   relative to the sum of the magnitudes of their terms (per channel).
2. The parameters and buffers stay float32 (num_batches_tracked int64) after
   16-bit calls, the state dict loads into torch.nn.BatchNorm2d, and float32
   calls after 16-bit ones (and 16-bit after float32) match the reference.
3. Unsupported dtypes (float64, integers) raise TypeError naming the dtype and
   leave the module's state as it was.
4. SyncBatchNorm on one process gives the same bits as BatchNorm2d with the same
   state (outputs, input gradients, weight/bias gradients, running statistics).
   Without arguments over Communicator.self(); with --world over its default
   (comm=None: Communicator.world(), MPI.COMM_WORLD through mpi4py; run it under
   mpiexec -n 1), and then only this test runs.

Run: PYTHONPATH=python /usr/bin/python3 tests/python/test_mixed_dtypes.py [--world]
Prints one line per test and 'N passed, N failed'; exits 1 on any failure.
"""
import sys
import traceback

import torch
import torch.nn.functional as F
from torch import nn

import syncbn.torch as sbn
from syncbn.mpi import Communicator

WORLD = "--world" in sys.argv[1:]
DTYPES = (torch.bfloat16, torch.float16)
MANTISSA_BITS = {torch.bfloat16: 7, torch.float16: 10}
SMALLEST_ULP = {torch.bfloat16: -133, torch.float16: -24}  # log2 of the smallest subnormal
STATS_TOLERANCE = 1e-6  # running statistics (float32) against float64
GRAD_TOLERANCE = 1e-5  # weight/bias gradients (float32) against float64, relative to the sum of |terms|
FLOAT32_TOLERANCE = 1e-5  # float32 calls, as in test_modules.py
worst = {}  # what -> the largest difference seen (in ulps, or relative)
tests = []


def test(function):
    tests.append(function)
    return function


def ulp(reference, dtype):
    """The ulp of dtype at each value of reference (float64): 2^(floor(log2|v|) - mantissa bits), at least
    the smallest subnormal (bfloat16 2^-133, float16 2^-24)."""
    magnitude = reference.detach().double().abs()
    _, exponent = torch.frexp(magnitude)  # |v| = m * 2^exponent, 0.5 <= m < 1: floor(log2|v|) = exponent - 1
    exponent = (exponent.long() - 1 - MANTISSA_BITS[dtype]).clamp(min=SMALLEST_ULP[dtype])
    exponent = torch.where(magnitude == 0, torch.full_like(exponent, SMALLEST_ULP[dtype]), exponent)
    return torch.pow(torch.full_like(magnitude, 2.0), exponent.double())


def within_one_ulp(what, ours, reference, dtype):
    assert ours.dtype == dtype, f"{what}: dtype {ours.dtype}, expected {dtype}"
    assert ours.shape == reference.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(reference.shape)}"
    reference = reference.detach().double()
    assert torch.isfinite(reference).all(), f"{what}: the reference is not finite"
    difference = (ours.detach().double() - reference).abs()
    ulps = difference / ulp(reference, dtype)
    key = f"{what} {str(dtype).replace('torch.', '')} (ulp)"
    largest = float(ulps.max()) if ulps.numel() else 0.0
    worst[key] = max(worst.get(key, 0.0), largest)
    if not largest <= 1.0:
        i = int(ulps.reshape(-1).argmax())
        raise AssertionError(f"{what}: {largest:.2f} ulp from float64 at flat index {i} (ours "
                             f"{float(ours.detach().reshape(-1)[i])!r}, float64 {float(reference.reshape(-1)[i])!r})")


def relative_difference(ours, reference):
    ours, reference = ours.detach().double(), reference.detach().double()
    assert ours.shape == reference.shape, f"shape {tuple(ours.shape)} != {tuple(reference.shape)}"
    scale = float(reference.abs().max())  # relative to the reference's largest element
    difference = float((ours - reference).abs().max())
    return difference / scale if scale > 0 else difference


def close(what, ours, reference, tolerance):
    difference = relative_difference(ours, reference)
    worst[what] = max(worst.get(what, 0.0), difference)
    assert difference <= tolerance, f"{what}: relative difference {difference:.3e} > {tolerance:.0e}"


def close_to_sums(what, ours, reference, scale, tolerance=GRAD_TOLERANCE):
    """Per channel: |ours - reference| <= tolerance * scale (the sum of the magnitudes of the summed terms)."""
    assert ours.dtype == torch.float32, f"{what}: dtype {ours.dtype}, expected float32"
    difference = float(((ours.double() - reference.double()).abs() / scale).max())
    worst[what] = max(worst.get(what, 0.0), difference)
    assert difference <= tolerance, f"{what}: difference {difference:.3e} of the sum of |terms| > {tolerance:.0e}"


def raises(exception_type, function, *words):
    try:
        function()
    except exception_type as e:
        message = str(e)
        for word in words:
            assert word.lower() in message.lower(), f"the message {message!r} does not name {word!r}"
        return message
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"expected {exception_type.__name__}, got {type(e).__name__}: {e}") from None
    raise AssertionError(f"expected {exception_type.__name__}, nothing raised")


def randomize(module, generator):
    """A random weight (either sign), a nonzero random bias and random running statistics."""
    channels = module.num_features
    with torch.no_grad():
        sign = torch.where(torch.rand(channels, generator=generator) < 0.25, -1.0, 1.0)
        module.weight.copy_(sign * (torch.rand(channels, generator=generator) + 0.5))
        bias = torch.randn(channels, generator=generator)
        module.bias.copy_(bias + torch.where(bias < 0, -0.1, 0.1))  # |bias| >= 0.1
        module.running_mean.copy_(torch.randn(channels, generator=generator))
        module.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)


def reference_step(module, x, upstream, training):
    """The float64 step: F.batch_norm on x.double() with the module's state (taken before its call) in
    double. Returns output, x grad, weight grad, bias grad, running mean and var after the step, and the
    scales of the weight and bias gradients (per channel: sum |upstream * x_hat|, sum |upstream|)."""
    x64 = x.detach().double().requires_grad_()
    w64 = module.weight.detach().double().requires_grad_()
    b64 = module.bias.detach().double().requires_grad_()
    mean64, var64 = module.running_mean.double(), module.running_var.double()  # copies, updated in place
    with torch.no_grad():  # the normalized input, for the gradient scales
        x_hat = F.batch_norm(x64, None if training else mean64, None if training else var64,
                             training=training, eps=module.eps)
    y64 = F.batch_norm(x64, mean64, var64, w64, b64, training=training, momentum=module.momentum, eps=module.eps)
    dy64 = upstream.double()
    y64.backward(dy64)
    other = [d for d in range(x.dim()) if d != 1]
    scale_w = (dy64 * x_hat).abs().sum(other)
    scale_b = dy64.abs().sum(other)
    return y64.detach(), x64.grad, w64.grad, b64.grad, mean64, var64, scale_w, scale_b


def make_input(shape, fmt, dtype, generator, offset=3.0, spread=2.5):
    x = (torch.randn(shape, generator=generator) * spread + offset).to(dtype)
    return x.contiguous(memory_format=fmt) if fmt is not None else x


# (name, module, input shape, memory format, offset, spread): spatial sizes and channel counts that are not
# multiples of a vector width; one input whose mean is large against its spread (cancellation).
LAYOUTS = [
    ("1d (N,C)", sbn.BatchNorm1d, (37, 5), None, 3.0, 2.5),
    ("1d (N,C,L)", sbn.BatchNorm1d, (4, 5, 19), None, 3.0, 2.5),
    ("2d NCHW", sbn.BatchNorm2d, (3, 6, 7, 9), None, 3.0, 2.5),
    ("2d channels_last", sbn.BatchNorm2d, (3, 19, 5, 7), torch.channels_last, 3.0, 2.5),
    ("2d channels_last C=3", sbn.BatchNorm2d, (4, 3, 5, 7), torch.channels_last, 3.0, 2.5),
    ("2d NCHW offset 200", sbn.BatchNorm2d, (3, 6, 7, 9), None, 200.0, 1.0),
    ("3d NCDHW", sbn.BatchNorm3d, (2, 5, 3, 4, 5), None, 3.0, 2.5),
    ("3d channels_last_3d", sbn.BatchNorm3d, (2, 7, 3, 4, 5), torch.channels_last_3d, 3.0, 2.5),
]


@test
def test_ulp_helper():
    """The ulp function against torch.finfo (so that the 1-ulp checks below mean what they say)."""
    for dtype in DTYPES:
        info = torch.finfo(dtype)
        assert float(ulp(torch.tensor([1.0]), dtype)) == info.eps
        assert float(ulp(torch.tensor([-1.5]), dtype)) == info.eps
        assert float(ulp(torch.tensor([0.999]), dtype)) == info.eps / 2
        largest = torch.tensor([info.max], dtype=dtype)
        below = (largest.view(torch.int16) - 1).view(dtype)  # the next value down, from the bits
        assert float(ulp(largest.double(), dtype)) == float(largest) - float(below)
        assert float(ulp(torch.tensor([0.0]), dtype)) == 2.0 ** SMALLEST_ULP[dtype]
    assert float(ulp(torch.tensor([1e-6]), torch.float16)) == 2.0 ** -24  # subnormal range of float16
    # one step of the 16-bit type is 1 ulp (passes), two are not
    for dtype in DTYPES:
        value = torch.tensor([1.2345], dtype=dtype)
        up = value.float() + 2 * torch.finfo(dtype).eps
        within_one_ulp("ulp self-check", value, value.double() + torch.finfo(dtype).eps, dtype)
        try:
            within_one_ulp("ulp self-check", up.to(dtype), value.double(), dtype)
        except AssertionError:
            pass
        else:
            raise AssertionError("a result 2 ulp away passed the 1-ulp check")
    worst.pop("ulp self-check bfloat16 (ulp)", None), worst.pop("ulp self-check float16 (ulp)", None)


@test
def test_against_float64():
    """Every layout, bfloat16 and float16: train, train, eval steps against float64."""
    generator = torch.Generator().manual_seed(11)
    cases = 0
    for dtype in DTYPES:
        for name, module_type, shape, fmt, offset, spread in LAYOUTS:
            what = f"{name} {dtype}"
            try:
                module = module_type(shape[1], eps=1e-5, momentum=0.1)
                randomize(module, generator)
                for step, mode in enumerate(("train", "train", "eval")):
                    training = mode == "train"
                    module.train(training)
                    module.weight.grad = module.bias.grad = None
                    x = make_input(shape, fmt, dtype, generator, offset, spread)
                    upstream = torch.randn(shape, generator=generator).to(dtype)
                    y64, dx64, dw64, db64, mean64, var64, scale_w, scale_b = reference_step(
                        module, x, upstream, training)
                    batches, mean_before = int(module.num_batches_tracked), module.running_mean.clone()
                    x_ours = x.clone(memory_format=torch.preserve_format).requires_grad_()
                    y = module(x_ours)
                    assert y.dtype == dtype, f"step {step}: output dtype {y.dtype}"
                    if fmt is not None:
                        assert y.is_contiguous(memory_format=fmt), f"step {step}: output of a {fmt} input not {fmt}"
                    within_one_ulp(f"{mode} output", y, y64, dtype)
                    y.backward(upstream)
                    assert x_ours.grad.dtype == dtype, f"step {step}: x.grad dtype {x_ours.grad.dtype}"
                    within_one_ulp(f"{mode} input grad", x_ours.grad, dx64, dtype)
                    close_to_sums(f"{mode} weight grad", module.weight.grad, dw64, scale_w)
                    close_to_sums(f"{mode} bias grad", module.bias.grad, db64, scale_b)
                    for buffer in (module.running_mean, module.running_var):
                        assert buffer.dtype == torch.float32, f"step {step}: a running buffer is {buffer.dtype}"
                    close(f"{mode} running_mean", module.running_mean, mean64, STATS_TOLERANCE)
                    close(f"{mode} running_var", module.running_var, var64, STATS_TOLERANCE)
                    assert int(module.num_batches_tracked) == batches + training, f"step {step}: num_batches_tracked"
                    moved = not torch.equal(module.running_mean, mean_before)
                    assert moved == training, f"step {step}: running_mean {'un' if training else ''}changed"
                cases += 1
            except AssertionError as e:
                raise AssertionError(f"{what}: {e}") from None
    print(f"  {cases} configurations x 3 steps")


def float64_twin(module):
    twin = nn.BatchNorm2d(module.num_features, module.eps, module.momentum).double()
    twin.load_state_dict(module.state_dict())
    twin.train(module.training)
    return twin


@test
def test_state_stays_float32():
    """16-bit calls leave the parameters and buffers float32 (the same tensors); a float32 call after them
    (and a 16-bit call after that) computes what it should."""
    generator = torch.Generator().manual_seed(12)
    module = sbn.BatchNorm2d(6, momentum=0.2)
    randomize(module, generator)
    before = {k: (v, v.dtype) for k, v in module.state_dict(keep_vars=True).items()}
    expected = {"weight": torch.float32, "bias": torch.float32, "running_mean": torch.float32,
                "running_var": torch.float32, "num_batches_tracked": torch.int64}
    for dtype in (torch.bfloat16, torch.float16, torch.bfloat16):
        x = make_input((4, 6, 3, 5), None, dtype, generator).requires_grad_()
        module(x).sum().backward()
        state = module.state_dict(keep_vars=True)
        assert {k: v.dtype for k, v in state.items()} == expected, \
            f"after a {dtype} call: {({k: v.dtype for k, v in state.items()})}"
        for k, v in state.items():
            assert v is before[k][0], f"after a {dtype} call, {k} is another tensor"
        assert module.weight.grad.dtype == module.bias.grad.dtype == torch.float32
    assert int(module.num_batches_tracked) == 3
    # the state dict is torch.nn's, float32
    theirs = nn.BatchNorm2d(6, momentum=0.2)
    theirs.load_state_dict(module.state_dict(), strict=True)
    # float32 calls after the 16-bit ones, train then eval, against float64
    for training in (True, False):
        module.train(training)
        reference = float64_twin(module)
        x = make_input((4, 6, 3, 5), None, torch.float32, generator)
        y = module(x)
        assert y.dtype == torch.float32
        close("float32 after 16-bit: output", y, reference(x.double()), FLOAT32_TOLERANCE)
        close("float32 after 16-bit: running_mean", module.running_mean, reference.running_mean, FLOAT32_TOLERANCE)
        close("float32 after 16-bit: running_var", module.running_var, reference.running_var, FLOAT32_TOLERANCE)
    assert int(module.num_batches_tracked) == 4
    # and a 16-bit call after the float32 ones
    module.train()
    x = make_input((4, 6, 3, 5), torch.channels_last, torch.float16, generator)
    y64 = reference_step(module, x, torch.zeros_like(x), True)[0]
    within_one_ulp("16-bit after float32: output", module(x), y64, torch.float16)
    assert module.running_mean.dtype == module.running_var.dtype == torch.float32


@test
def test_unsupported_dtypes():
    """float64 and integer inputs: TypeError naming the dtype; the module's state unchanged."""
    for module in (sbn.BatchNorm1d(4), sbn.BatchNorm2d(4), sbn.BatchNorm3d(4),
                   sbn.SyncBatchNorm(4, comm=Communicator.self())):
        shape = {sbn.BatchNorm1d: (3, 4, 5), sbn.BatchNorm3d: (3, 4, 2, 2, 2)}.get(type(module), (3, 4, 2, 3))
        module(torch.randn(shape).bfloat16())  # a 16-bit call first: the layer exists
        before = {k: v.clone() for k, v in module.state_dict().items()}
        for dtype in (torch.float64, torch.int64, torch.int32, torch.uint8):
            x = torch.ones(shape, dtype=dtype)
            raises(TypeError, lambda: module(x), str(dtype).replace("torch.", ""))
        for k, v in module.state_dict().items():
            assert torch.equal(v, before[k]) and v.dtype == before[k].dtype, f"{type(module).__name__}: {k} changed"


def bits(tensor):
    return tensor.detach().view(torch.int16 if tensor.element_size() == 2 else torch.int32)


def same_bits(what, a, b):
    assert a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride(), \
        f"{what}: {a.dtype} {tuple(a.shape)} {a.stride()} != {b.dtype} {tuple(b.shape)} {b.stride()}"
    assert torch.equal(bits(a), bits(b)), f"{what}: bits differ"


@test
def test_sync_batchnorm_one_process():
    """SyncBatchNorm on one process: the same bits as BatchNorm2d with the same state, train and eval."""
    generator = torch.Generator().manual_seed(13)
    configurations = 0
    for dtype in DTYPES:
        for fmt in (None, torch.channels_last):
            plain = sbn.BatchNorm2d(10)
            randomize(plain, generator)
            sync = sbn.SyncBatchNorm(10) if WORLD else sbn.SyncBatchNorm(10, comm=Communicator.self())
            if WORLD:
                assert sync.comm is Communicator.world(), "comm=None is not Communicator.world()"
            assert sync.comm.size == 1 and sync.comm.rank == 0, f"{sync.comm.size} ranks"
            sync.load_state_dict(plain.state_dict())
            for step, mode in enumerate(("train", "train", "eval")):
                what = f"{dtype} {fmt} step {step} ({mode})"
                plain.train(mode == "train"), sync.train(mode == "train")
                x = make_input((5, 10, 3, 7), fmt, dtype, generator)
                upstream = torch.randn(5, 10, 3, 7, generator=generator).to(dtype)
                outputs = []
                for module in (plain, sync):
                    module.weight.grad = module.bias.grad = None
                    xg = x.clone(memory_format=torch.preserve_format).requires_grad_()
                    y = module(xg)
                    y.backward(upstream)
                    outputs.append((y, xg.grad, module.weight.grad, module.bias.grad))
                (y1, dx1, dw1, db1), (y2, dx2, dw2, db2) = outputs
                assert y2.dtype == dtype, f"{what}: output dtype {y2.dtype}"
                same_bits(f"{what}: output", y2, y1)
                same_bits(f"{what}: input grad", dx2, dx1)
                same_bits(f"{what}: weight grad", dw2, dw1)
                same_bits(f"{what}: bias grad", db2, db1)
                same_bits(f"{what}: running_mean", sync.running_mean, plain.running_mean)
                same_bits(f"{what}: running_var", sync.running_var, plain.running_var)
                assert int(sync.num_batches_tracked) == int(plain.num_batches_tracked)
            configurations += 1
    print(f"  {configurations} configurations x 3 steps, {'comm=None' if WORLD else 'Communicator.self()'}")


def main():
    selected = [test_sync_batchnorm_one_process] if WORLD else tests
    passed = failed = 0
    for function in selected:
        try:
            function()
            passed += 1
            print(f"ok: {function.__name__}")
        except Exception:  # noqa: BLE001
            failed += 1
            print(f"FAIL: {function.__name__}")
            traceback.print_exc(file=sys.stdout)
    print("largest differences: " + ", ".join(f"{k} {v:.2e}" for k, v in sorted(worst.items())))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
