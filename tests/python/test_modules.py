#!/usr/bin/python3
"""syncbn.torch's BatchNorm1d/2d/3d against torch.nn's, in one process.

The reference is torch.nn.BatchNormXd run in float64 on the same inputs and
parameters (upcast from ours, which are float32); every comparison is a
relative one (max |ours - reference| / max |reference|) at 1e-5. Checked:
forward outputs, input gradients, weight/bias gradients, running_mean/var and
num_batches_tracked over train steps, eval steps and a train step after eval,
for affine yes/no x track_running_stats yes/no x momentum 0.1/None, on (N,C),
(N,C,L), (N,C,H,W) and (N,C,D,H,W), contiguous and channels_last(_3d) and a
non-contiguous view; the input gradient against central differences; the memory
format of the output; state dicts both ways with torch.nn.BatchNorm2d; clear
errors (device, dtype, channels, dimensions, a batch of one); convert/revert
keeping the same Parameter and buffer objects; a second call before backward;
deepcopy and pickling.

Run: PYTHONPATH=python /usr/bin/python3 tests/python/test_modules.py
Prints one line per test and 'N passed, N failed'; exits 1 on any failure.
"""
import copy
import io
import itertools
import sys
import traceback

import torch
from torch import nn

import syncbn
import syncbn.torch as sbn
from syncbn.mpi import Communicator

TOLERANCE = 1e-5
worst = {}  # what -> the largest relative difference seen
tests = []


def test(function):
    tests.append(function)
    return function


def relative_difference(ours, reference):
    ours, reference = ours.detach().double(), reference.detach().double()
    assert ours.shape == reference.shape, f"shape {tuple(ours.shape)} != {tuple(reference.shape)}"
    if ours.numel() == 0:
        return 0.0
    scale = float(reference.abs().max())  # relative to the reference's largest element
    difference = float((ours - reference).abs().max())
    return difference / scale if scale > 0 else difference


def close(what, ours, reference, tolerance=TOLERANCE):
    difference = relative_difference(ours, reference)
    worst[what] = max(worst.get(what, 0.0), difference)
    assert difference <= tolerance, f"{what}: relative difference {difference:.3e} > {tolerance:.0e}"


MODULES = {1: (sbn.BatchNorm1d, nn.BatchNorm1d), 2: (sbn.BatchNorm2d, nn.BatchNorm2d),
           3: (sbn.BatchNorm3d, nn.BatchNorm3d)}
# (name, module dimension, input shape, memory format)
LAYOUTS = [
    ("1d (N,C)", 1, (7, 5), None),
    ("1d (N,C,L)", 1, (4, 5, 6), None),
    ("2d NCHW", 2, (3, 5, 4, 6), None),
    ("2d channels_last", 2, (3, 5, 4, 6), torch.channels_last),
    ("2d non-contiguous", 2, (3, 5, 4, 6), "transposed"),
    ("3d NCDHW", 3, (2, 5, 3, 4, 2), None),
    ("3d channels_last_3d", 3, (2, 5, 3, 4, 2), torch.channels_last_3d),
]


def make_input(shape, fmt, generator):
    x = torch.randn(shape, generator=generator) * 2.5 + 3.0  # an offset: the mean matters
    if fmt == "transposed":  # the same values, non-contiguous strides (a transposed view)
        return x.transpose(2, 3).contiguous().transpose(2, 3)
    if fmt is not None:
        return x.contiguous(memory_format=fmt)
    return x


def pair(dim, channels, affine, track, momentum, generator):
    """Our module (float32) and torch.nn's (float64) with the same random parameters and buffers."""
    ours_type, torch_type = MODULES[dim]
    ours = ours_type(channels, eps=1e-5, momentum=momentum, affine=affine, track_running_stats=track)
    reference = torch_type(channels, eps=1e-5, momentum=momentum, affine=affine,
                           track_running_stats=track).double()
    with torch.no_grad():
        if affine:
            ours.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
            ours.bias.copy_(torch.randn(channels, generator=generator))
            reference.weight.copy_(ours.weight.double())
            reference.bias.copy_(ours.bias.double())
        if track:
            ours.running_mean.copy_(torch.randn(channels, generator=generator))
            ours.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
            reference.running_mean.copy_(ours.running_mean.double())
            reference.running_var.copy_(ours.running_var.double())
    return ours, reference


def compare_state(ours, reference, what):
    if ours.affine:
        assert (ours.weight.grad is None) == (reference.weight.grad is None), f"{what}: grad presence differs"
        if reference.weight.grad is not None:
            close("weight grad", ours.weight.grad, reference.weight.grad)
            close("bias grad", ours.bias.grad, reference.bias.grad)
    if ours.track_running_stats:
        close("running_mean", ours.running_mean, reference.running_mean)
        close("running_var", ours.running_var, reference.running_var)
        assert int(ours.num_batches_tracked) == int(reference.num_batches_tracked), \
            f"{what}: num_batches_tracked {int(ours.num_batches_tracked)} != {int(reference.num_batches_tracked)}"
        assert ours.num_batches_tracked.dtype == torch.long
    else:
        assert ours.running_mean is None and ours.running_var is None and ours.num_batches_tracked is None


def one_step(ours, reference, x, upstream):
    """Forward and backward of both with loss = sum(y * upstream); compares y and x.grad."""
    x_ours = x.clone(memory_format=torch.preserve_format).requires_grad_()
    if not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last) \
            and not x.is_contiguous(memory_format=torch.channels_last_3d):
        x_ours = x.detach().requires_grad_()  # keep the non-contiguous strides: clone() would make them dense
    x_reference = x.detach().double().requires_grad_()
    y_ours = ours(x_ours)
    y_reference = reference(x_reference)
    assert y_ours.dtype == torch.float32
    close("output", y_ours, y_reference)
    (y_ours.double() * upstream).sum().backward()
    (y_reference * upstream).sum().backward()
    close("input grad", x_ours.grad, x_reference.grad)
    return y_ours, x_ours


@test
def test_against_torch_nn():
    """Every option and layout: 3 train steps, 2 eval steps, 1 train step, with parameter updates between."""
    generator = torch.Generator().manual_seed(1)
    cases = 0
    for (name, dim, shape, fmt), affine, track, momentum in itertools.product(
            LAYOUTS, (True, False), (True, False), (0.1, None)):
        what = f"{name} affine={affine} track={track} momentum={momentum}"
        try:
            ours, reference = pair(dim, shape[1], affine, track, momentum, generator)
            for step, mode in enumerate(["train"] * 3 + ["eval"] * 2 + ["train"]):
                ours.train(mode == "train")
                reference.train(mode == "train")
                x = make_input(shape, fmt, generator)
                upstream = torch.randn(shape, generator=generator, dtype=torch.float64)
                y, _ = one_step(ours, reference, x, upstream)
                if fmt is not None and fmt != "transposed":
                    assert y.is_contiguous(memory_format=fmt), f"output of a {fmt} input is not {fmt}"
                compare_state(ours, reference, f"step {step}")
                if affine:  # an optimizer's step between calls (gradients keep accumulating)
                    with torch.no_grad():
                        delta_w = 0.05 * torch.randn(shape[1], generator=generator)
                        delta_b = 0.05 * torch.randn(shape[1], generator=generator)
                        ours.weight.add_(delta_w)
                        ours.bias.add_(delta_b)
                        reference.weight.copy_(ours.weight.double())
                        reference.bias.copy_(ours.bias.double())
            cases += 1
        except AssertionError as e:
            raise AssertionError(f"{what}: {e}") from None
    print(f"  {cases} configurations x 6 steps")


@test
def test_channels_last_output():
    """A channels_last input gives a channels_last output (as torch.nn), in training and eval, and its
    backward takes upstream gradients in either format."""
    for fmt, shape, module in ((torch.channels_last, (4, 6, 5, 3), sbn.BatchNorm2d(6)),
                               (torch.channels_last_3d, (2, 6, 2, 4, 3), sbn.BatchNorm3d(6))):
        reference = MODULES[len(shape) - 2][1](6).double()
        for training in (True, False):
            module.train(training), reference.train(training)
            x = torch.randn(shape).contiguous(memory_format=fmt)
            for upstream in (torch.randn(shape, dtype=torch.float64),
                             torch.randn(shape, dtype=torch.float64).contiguous(memory_format=fmt)):
                y, _ = one_step(module, reference, x, upstream)
                assert y.is_contiguous(memory_format=fmt) and not y.is_contiguous(), f"output not {fmt}"
            with torch.no_grad():  # what torch.nn does (a separate module: the reference's state stays in step)
                assert MODULES[len(shape) - 2][1](6)(x).is_contiguous(memory_format=fmt)


def numeric_gradient(function, x, h):
    """Central differences of the scalar function at x (float32 tensor), in float64."""
    gradient = torch.zeros(x.shape, dtype=torch.float64)
    flat = x.view(-1)
    for i in range(flat.numel()):
        saved = float(flat[i])
        flat[i] = saved + h
        up = function(x)
        flat[i] = saved - h
        down = function(x)
        flat[i] = saved
        gradient.view(-1)[i] = (up - down) / (2 * h)
    return gradient


@test
def test_finite_differences():
    """The input, weight and bias gradients against float32 central differences on a tiny input."""
    generator = torch.Generator().manual_seed(2)
    for training, fmt in ((True, None), (True, torch.channels_last), (False, None)):
        m = sbn.BatchNorm2d(2, track_running_stats=True)
        with torch.no_grad():
            m.weight.copy_(torch.tensor([1.3, -0.7]))
            m.bias.copy_(torch.tensor([0.2, 0.5]))
            m.running_mean.copy_(torch.tensor([0.3, -0.1]))
            m.running_var.copy_(torch.tensor([1.5, 0.8]))
        m.train(training)
        x = torch.randn(3, 2, 2, 2, generator=generator)  # contiguous: perturbed in place element by element
        upstream = torch.randn(3, 2, 2, 2, generator=generator, dtype=torch.float64)

        def loss(inp):
            if fmt is not None:
                inp = inp.contiguous(memory_format=fmt)
            with torch.no_grad():
                return float((m(inp).double() * upstream).sum())

        xg = (x if fmt is None else x.contiguous(memory_format=fmt)).clone(
            memory_format=torch.preserve_format).requires_grad_()
        (m(xg).double() * upstream).sum().backward()
        numeric = numeric_gradient(loss, x.clone(), 1e-2)
        close("finite-difference input grad", xg.grad, numeric, 2e-3)
        for parameter in (m.weight, m.bias):
            analytic = parameter.grad.clone()
            numeric = numeric_gradient(lambda _: loss(x), parameter.data, 1e-2)
            close("finite-difference weight/bias grad", analytic, numeric, 2e-3)
            parameter.grad = None
        # a wrong gradient is caught: the same check with a perturbed analytic gradient fails
        wrong = xg.grad.contiguous().clone()
        wrong.view(-1)[5] += 0.05
        assert relative_difference(wrong, numeric_gradient(loss, x.clone(), 1e-2)) > 2e-3


@test
def test_state_dict_both_ways():
    torch.manual_seed(3)
    ours = sbn.BatchNorm2d(8, momentum=0.3)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ours.bias.normal_()
    for _ in range(3):
        ours(torch.randn(4, 8, 3, 3) * 2 + 1)
    state = ours.state_dict()
    theirs = nn.BatchNorm2d(8, momentum=0.3)
    assert list(state.keys()) == list(theirs.state_dict().keys()), f"{list(state.keys())}"
    theirs.load_state_dict(state, strict=True)
    assert int(theirs.num_batches_tracked) == 3
    ours.eval(), theirs.eval()
    x = torch.randn(5, 8, 4, 4)
    close("state dict ours -> torch.nn (eval output)", ours(x), theirs(x))
    # back: train torch.nn's for a few steps and load its state into a fresh module of ours
    theirs.train()
    for _ in range(2):
        theirs(torch.randn(4, 8, 3, 3) * 3 - 1)
    back = sbn.BatchNorm2d(8, momentum=0.3)
    back.load_state_dict(theirs.state_dict(), strict=True)
    assert int(back.num_batches_tracked) == 5
    back.eval(), theirs.eval()
    close("state dict torch.nn -> ours (eval output)", back(x), theirs(x))
    # the loaded state is what the next training call starts from
    back.train(), theirs.train()
    xt = torch.randn(4, 8, 3, 3)
    close("state dict torch.nn -> ours (train output)", back(xt), theirs(xt))
    close("running_var after load and a step", back.running_var, theirs.running_var)
    assert int(back.num_batches_tracked) == int(theirs.num_batches_tracked) == 6


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


@test
def test_errors():
    m = sbn.BatchNorm2d(4)
    before = (m.running_mean.clone(), m.running_var.clone(), int(m.num_batches_tracked))
    raises(TypeError, lambda: m(torch.empty(2, 4, 3, 3, device="meta")), "cpu", "meta")
    raises(TypeError, lambda: m(torch.randn(2, 4, 3, 3, dtype=torch.float64)), "float32", "float64")
    # float16 and bfloat16 inputs are accepted (test_mixed_dtypes.py)
    raises(TypeError, lambda: m(torch.ones(2, 4, 3, 3, dtype=torch.int32)), "float32")
    raises(ValueError, lambda: m(torch.randn(2, 5, 3, 3)), "4", "channels")
    raises(ValueError, lambda: m(torch.randn(2, 4, 3)), "4D", "3D")
    raises(ValueError, lambda: sbn.BatchNorm1d(4)(torch.randn(2, 4, 3, 3)), "4D")
    raises(ValueError, lambda: sbn.BatchNorm3d(4)(torch.randn(2, 4, 3, 3)), "5D")
    # one value per channel in training: the library's error, as PyTorch's ValueError says it
    message = raises(syncbn.SyncBNError, lambda: sbn.BatchNorm1d(4)(torch.randn(1, 4)), "more than 1 value")
    assert "SBN_ERR_BATCH" in message
    raises(ValueError, lambda: nn.BatchNorm1d(4)(torch.randn(1, 4)), "more than 1 value")  # the same as PyTorch
    assert isinstance(syncbn.SyncBNError(1, "x"), RuntimeError)
    # failed calls left the module as it was
    assert torch.equal(m.running_mean, before[0]) and torch.equal(m.running_var, before[1])
    assert int(m.num_batches_tracked) == before[2]
    # a batch of one image with several pixels is fine in training (count = H*W), as in PyTorch
    close("batch of one image", m(torch.randn(1, 4, 3, 3)) * 0, torch.zeros(1, 4, 3, 3))


@test
def test_convert_and_revert_keep_objects():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6, momentum=None),
                          nn.Sequential(nn.ReLU(), nn.BatchNorm2d(6, affine=False)),
                          sbn.BatchNorm2d(6, track_running_stats=False))
    model[0].eval()
    model[2][1].eval()
    originals = []
    for m in (model[1], model[2][1], model[3]):
        originals.append((m.weight, m.bias, m.running_mean, m.running_var, m.num_batches_tracked, m.training,
                          m.momentum, m.affine, m.track_running_stats))
    comm = Communicator.self()
    converted = sbn.convert_sync_batchnorm(model, comm)
    assert converted is model
    converted_bns = [converted[1], converted[2][1], converted[3]]
    for m, original in zip(converted_bns, originals):
        assert type(m) is sbn.SyncBatchNorm and m.comm is comm
        state = (m.weight, m.bias, m.running_mean, m.running_var, m.num_batches_tracked)
        for a, b in zip(state, original[:5]):
            assert a is b, "convert_sync_batchnorm replaced a Parameter or buffer object"
        assert (m.training, m.momentum, m.affine, m.track_running_stats) == original[5:]
    assert isinstance(converted[1].weight, nn.Parameter)
    # the converted model computes what the original torch.nn model computes (P = 1)
    x = torch.randn(4, 3, 7, 7)
    reference = copy.deepcopy(revert_reference(model))
    close("converted model output", converted(x), reference(x))
    reverted = sbn.revert_sync_batchnorm(converted)
    for m, original in zip((reverted[1], reverted[2][1], reverted[3]), originals):
        assert isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, sbn.SyncBatchNorm)
        assert not isinstance(m, sbn._SyncBNBase), "revert gave a syncbn module, not a torch.nn one"
        state = (m.weight, m.bias, m.running_mean, m.running_var, m.num_batches_tracked)
        for a, b in zip(state, original[:5]):
            assert a is b, "revert_sync_batchnorm replaced a Parameter or buffer object"
        assert (m.training, m.momentum, m.affine, m.track_running_stats) == original[5:]
    # a bare BatchNorm converts to a new module sharing its tensors
    bare = nn.BatchNorm1d(5)
    single = sbn.convert_sync_batchnorm(bare, comm)
    assert single is not bare and single.weight is bare.weight and single.running_var is bare.running_var
    assert sbn.revert_sync_batchnorm(single).weight is bare.weight


def revert_reference(model):
    """A torch.nn copy of model built by hand (not with revert_sync_batchnorm): BatchNorm2d everywhere."""
    reference = copy.deepcopy(nn.Sequential(model[0], nn.Identity(), nn.Sequential(model[2][0], nn.Identity()),
                                            nn.Identity()))
    for path, m in (((1,), model[1]), ((2, 1), model[2][1]), ((3,), model[3])):
        twin = nn.BatchNorm2d(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
        twin.load_state_dict(m.state_dict())
        twin.train(m.training)
        parent = reference
        for k in path[:-1]:
            parent = parent[k]
        parent[path[-1]] = twin
    return reference


@test
def test_called_twice_before_backward():
    m = sbn.BatchNorm2d(3)
    x1 = torch.randn(2, 3, 4, 4, requires_grad=True)
    x2 = torch.randn(2, 3, 4, 4, requires_grad=True)
    y1 = m(x1)
    y2 = m(x2)
    raises(RuntimeError, lambda: (y1.sum() + (y2 * 2).sum()).backward(), "called again before the backward")
    # the usual pattern, forward then backward each time, works and matches torch.nn
    reference = nn.BatchNorm2d(3).double()
    for _ in range(2):
        x = torch.randn(2, 3, 4, 4)
        one_step(m, reference, x, torch.randn(2, 3, 4, 4, dtype=torch.float64))
    # the last call's backward alone is fine
    m2 = sbn.BatchNorm2d(3)
    m2(x1)
    x3 = torch.randn(2, 3, 4, 4, requires_grad=True)
    m2(x3).sum().backward()
    assert x3.grad is not None
    # an earlier call's backward after a later forward, even a no_grad one, raises
    y = m2(x1)
    with torch.no_grad():
        m2(x2)
    raises(RuntimeError, lambda: y.sum().backward(), "called again before the backward")


@test
def test_deepcopy_and_pickle():
    """A module used once can be deep-copied (an EMA copy, an eval copy) and saved whole, as torch.nn's."""
    m = sbn.BatchNorm2d(4)
    x = torch.randn(3, 4, 5, 5)
    m(x)
    twin = copy.deepcopy(m)
    assert twin.running_mean is not m.running_mean and torch.equal(twin.running_mean, m.running_mean)
    close("deepcopy output", twin(x), m(x))
    assert int(twin.num_batches_tracked) == int(m.num_batches_tracked) == 2
    twin.running_mean.add_(1.0)  # independent
    m.eval(), twin.eval()
    assert not torch.equal(twin(x), m(x))
    buffer = io.BytesIO()
    torch.save(m, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer)
    close("pickled module output", loaded(x), m(x))
    s = sbn.SyncBatchNorm(4, comm=Communicator.self())
    s(x)
    s2 = copy.deepcopy(s)
    assert s2.comm is s.comm, "a deep copy of a SyncBatchNorm shares its communicator"
    close("deepcopy SyncBatchNorm output", s2(x), s(x))


def main():
    passed = failed = 0
    for function in tests:
        try:
            function()
            passed += 1
            print(f"ok: {function.__name__}")
        except Exception:  # noqa: BLE001
            failed += 1
            print(f"FAIL: {function.__name__}")
            traceback.print_exc(file=sys.stdout)
    print("largest relative differences: " + ", ".join(f"{k} {v:.2e}" for k, v in sorted(worst.items())))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
