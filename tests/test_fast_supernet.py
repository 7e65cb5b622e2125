"""The fast supernet computes the reference supernet's function: outputs, losses, gradients, search.

Two tolerances. float64: the impls agree to 1e-10 elementwise (seen: 4e-15), i.e. they are the
same function up to the order of additions. float32: they agree to 1e-5 relative (seen: 1e-6),
measured as the 2-norm of the difference over the 2-norm of the reference's tensor (the weight
gradient as one vector, as gradient clipping sees it). float32 caveat: an activation within
rounding distance of a ReLU kink can take the other side in one impl, which changes that
element's gradient by O(1) (seen once, with another data seed: ~1% on the alpha gradient, the
reference being the one off from float64); the seeds here avoid such a coincidence.
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ray_nas.config import SpecError, resolve_search
from ray_nas.search.loop import hessian_eigenvalue, search
from ray_nas.spaces import nb201
from ray_nas.spaces.nb201.build import build_supernet
from ray_nas.spaces.nb201.fast import BN_EPS, BN_MOMENTUM, FastSupernet, batch_norm
from ray_nas.spaces.nb201.supernet import Supernet

from .conftest import TINY_SEARCH

OP_SETS = [
    nb201.OPS,
    tuple(o for o in nb201.OPS if o != "skip_connect"),
    tuple(o for o in nb201.OPS if o != "none"),
    ("nor_conv_1x1", "nor_conv_3x3"),
    ("skip_connect", "nor_conv_1x1"),
    ("none", "avg_pool_3x3"),
    ("nor_conv_3x3",),
    ("avg_pool_3x3",),
    ("none",),
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: a second thread only adds synchronisation (seconds per op on a busy 2-core box)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def norm_close(
    fast: torch.Tensor, ref: torch.Tensor, what: str, tol: float = 1e-5, scale=None
) -> None:
    """|fast - ref|_2 <= tol * scale, scale = |ref|_2 unless given."""
    err = (fast - ref).double().norm().item()
    bound = tol * (ref.double().norm().item() if scale is None else scale)
    assert err <= bound, f"{what}: |fast - ref| = {err:.3g} > {bound:.3g}"


def pair(
    ops, track: bool, dtype: torch.dtype, seed: int = 0, channels_last: bool = False
) -> tuple[Supernet, FastSupernet]:
    """A reference net with random alphas and a fast net holding the same weights."""
    torch.manual_seed(seed)
    ref = Supernet(ops, channels=4, cells=1, num_classes=10, track_running_stats=track)
    with torch.no_grad():
        ref.alpha.normal_()  # far from uniform: every op weight differs
    fast = FastSupernet(
        ops, channels=4, cells=1, num_classes=10, track_running_stats=track,
        channels_last=channels_last,
    )  # fmt: skip
    fast.load_from_reference(ref)
    return ref.to(dtype), fast.to(dtype)


def weight_grads_in_fast_layout(ref: Supernet, fast: FastSupernet) -> dict[str, torch.Tensor]:
    """The reference's weight gradients, rearranged as the fast net's parameters."""
    holder = copy.deepcopy(ref)
    with torch.no_grad():
        for p, q in zip(holder.weight_parameters(), ref.weight_parameters()):
            p.copy_(q.grad)
    out = copy.deepcopy(fast)
    out.load_from_reference(holder)
    return {name: p.detach() for name, p in out.named_parameters() if name != "alpha"}


def forward_backward(net, x, y):
    logits = net(x)
    loss = F.cross_entropy(logits, y)
    net.zero_grad(set_to_none=True)
    loss.backward()
    return logits.detach(), loss.detach()


def compare(
    fast: torch.Tensor, ref: torch.Tensor, what: str, dtype: torch.dtype, scale=None
) -> None:
    if dtype == torch.float64:
        scale = ref.abs().max().item() if scale is None else scale
        torch.testing.assert_close(
            fast, ref, rtol=1e-10, atol=1e-10 * scale, msg=lambda m: f"{what}: {m}"
        )
    else:
        norm_close(fast, ref, what, scale=scale)


# channels_last=True only in float64 on CPU: torch's CPU channels-last BatchNorm (stem, ResNet
# blocks, head; the reference's cells too) sums float32 sequentially (see fast_supernet's
# docstring); benchmarks/gpu_check.sh measures it on GPUs
DTYPES_LAYOUTS = [
    pytest.param(torch.float64, False, id="float64"),
    pytest.param(torch.float32, False, id="float32"),
    pytest.param(torch.float64, True, id="float64-channels-last"),
]


@pytest.mark.parametrize("dtype, channels_last", DTYPES_LAYOUTS)
@pytest.mark.parametrize("track", [False, True], ids=["batch-stats", "running-stats"])
@pytest.mark.parametrize("ops", OP_SETS, ids=lambda ops: "+".join(ops))
def test_same_outputs_losses_and_gradients(ops, track, dtype, channels_last):
    ref, fast = pair(ops, track, dtype, channels_last=channels_last)
    if channels_last:
        assert fast.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(2)
    for _ in range(2):  # the second pass sees running stats updated by the first
        x = torch.randn(8, 3, 16, 16, generator=gen, dtype=dtype)
        y = torch.randint(0, 10, (8,), generator=gen)
        logits_r, loss_r = forward_backward(ref, x, y)
        logits_f, loss_f = forward_backward(fast, x, y)
        compare(logits_f, logits_r, "logits", dtype)
        compare(loss_f, loss_r, "loss", dtype)
        if ref.alpha.grad is not None:  # None: a single op, whose softmax is constant
            compare(fast.alpha.grad, ref.alpha.grad, "alpha grad", dtype)
        expected = weight_grads_in_fast_layout(ref, fast)
        got = {name: p.grad for name, p in fast.named_parameters() if name != "alpha"}
        whole = torch.cat([g.flatten() for g in expected.values()])
        compare(torch.cat([g.flatten() for g in got.values()]), whole, "weight grads", dtype)
        scale = whole.abs().max().item() if dtype == torch.float64 else whole.double().norm().item()
        for name in expected:  # each tensor, on the scale of the whole gradient
            compare(got[name], expected[name], f"grad of {name}", dtype, scale=scale)
    # eval mode: the running statistics (when tracked) replace the batch statistics
    ref.eval(), fast.eval()
    with torch.no_grad():
        x = torch.randn(5, 3, 16, 16, generator=gen, dtype=dtype)
        compare(fast(x), ref(x), "eval logits", dtype)


def test_one_step_each_keeps_the_nets_equal_and_steps_separate():
    """A weight step then an alpha step, as the search loop does, on both impls."""
    ref, fast = pair(nb201.OPS, False, torch.float32)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    for net in (ref, fast):
        alpha0 = net.alpha.detach().clone()
        w = net.weight_parameters()
        F.cross_entropy(net(x), y).backward(inputs=w)
        assert net.alpha.grad is None and all(p.grad is not None for p in w)
        torch.optim.SGD(w, lr=0.1, momentum=0.9).step()
        assert torch.equal(net.alpha, alpha0)
        weights0 = [p.detach().clone() for p in w]
        F.cross_entropy(net(x), y).backward(inputs=[net.alpha])
        torch.optim.Adam([net.alpha], lr=0.01).step()
        assert all(torch.equal(a, b) for a, b in zip(w, weights0))
    with torch.no_grad():
        norm_close(fast(x), ref(x), "logits after one step each")


def test_same_initialisation_and_hessian():
    """Built from one seed, both impls start identical; their alpha Hessians agree."""
    torch.manual_seed(3)
    ref = build_supernet("reference", nb201.OPS, 4, 1, 10, False)
    torch.manual_seed(3)
    fast = build_supernet("fast", nb201.OPS, 4, 1, 10, False)
    assert torch.equal(ref.alpha, fast.alpha) and fast.arch() == ref.arch()
    x, y = torch.randn(6, 3, 16, 16), torch.randint(0, 10, (6,))
    with torch.no_grad():
        norm_close(fast(x), ref(x), "logits at init")
    eig_r, h_r = hessian_eigenvalue(ref, ref.alpha, x, y, 0.0)
    eig_f, h_f = hessian_eigenvalue(fast, fast.alpha, x, y, 0.0)
    np.testing.assert_allclose(h_f, h_r, rtol=1e-4, atol=1e-4 * np.abs(h_r).max())
    assert eig_f == pytest.approx(eig_r, rel=1e-4)


def test_channels_last_hessian_equals_the_reference_in_float64():
    """search.channels_last: both impls in channels-last, the Hessian's double backward included."""
    torch.manual_seed(4)
    ref = build_supernet("reference", nb201.OPS, 4, 1, 10, False).double()
    torch.manual_seed(4)
    fast = build_supernet("fast", nb201.OPS, 4, 1, 10, False, channels_last=True).double()
    torch.manual_seed(4)
    ref_cl = build_supernet("reference", nb201.OPS, 4, 1, 10, False, channels_last=True).double()
    assert ref_cl.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    x, y = torch.randn(6, 3, 16, 16, dtype=torch.float64), torch.randint(0, 10, (6,))
    out = fast(x)
    assert out.shape == (6, 10)
    _, h_r = hessian_eigenvalue(ref, ref.alpha, x, y, 0.0)
    for net in (fast, ref_cl):
        _, h = hessian_eigenvalue(net, net.alpha, x, y, 0.0)
        np.testing.assert_allclose(h, h_r, rtol=1e-9, atol=1e-9 * np.abs(h_r).max())


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_batch_stats_norm_is_torch_batch_norm(dtype, layout):
    """The CPU batch-statistics BatchNorm: output, gradients, running stats as F.batch_norm's,
    its double backward exact (gradgradcheck), and precise where E[y^2] - mean^2 would not be."""
    gen = torch.Generator().manual_seed(0)
    # channel means up to 30x their std: a one-pass variance would lose ~1e-4 here in float32
    y = torch.randn(8, 5, 6, 7, generator=gen, dtype=torch.float64) * torch.rand(
        5, 1, 1, generator=gen, dtype=torch.float64
    )
    y = (y + 30 * torch.linspace(-1, 1, 5, dtype=torch.float64).view(5, 1, 1) * y.std()).to(dtype)
    y = y.contiguous(memory_format=layout)
    scale = torch.rand(5, generator=gen, dtype=torch.float64).to(dtype)
    g = torch.randn(y.shape, generator=gen, dtype=torch.float64).to(dtype)
    g = g.contiguous(memory_format=layout)
    results = []
    for fn in (batch_norm, "torch"):
        # torch's kernel in NCHW: its channels-last one sums sequentially (the bar is the precise one)
        yy = (y.contiguous() if fn == "torch" else y.clone()).requires_grad_()
        ss = scale.clone().requires_grad_()
        rm, rv = torch.full((5,), 0.5, dtype=dtype), torch.full((5,), 2.0, dtype=dtype)
        if fn == "torch":
            out = F.batch_norm(yy, rm, rv, ss, None, True, BN_MOMENTUM, BN_EPS)
        else:
            out = fn(yy, ss, rm, rv, batch_stats=True)
        assert fn == "torch" or out.is_contiguous(memory_format=layout)
        results.append((out, *torch.autograd.grad(out, (yy, ss), g), rm, rv))
    # the float64 truth for float32: torch's kernel on the same inputs in float64
    truth = results[1] if dtype == torch.float64 else None
    if truth is None:
        yy, ss = y.double().requires_grad_(), scale.double().requires_grad_()
        rm, rv = (
            torch.full((5,), 0.5, dtype=torch.float64),
            torch.full((5,), 2.0, dtype=torch.float64),
        )
        out = F.batch_norm(yy, rm, rv, ss, None, True, BN_MOMENTUM, BN_EPS)
        truth = (out, *torch.autograd.grad(out, (yy, ss), g.double()), rm, rv)
    names = ("out", "grad y", "grad scale", "running mean", "running var")
    for what, mine, theirs, true in zip(names, results[0], results[1], truth):
        if dtype == torch.float64:
            norm_close(mine, true, what, tol=1e-12)
        else:  # as close to float64 as torch's own float32 kernel: within 2x, + 1e-7 relative
            err = (mine.double() - true.double()).norm() / true.double().norm()
            err_torch = (theirs.double() - true.double()).norm() / true.double().norm()
            assert err <= 2 * err_torch + 1e-7, f"{what}: {err:.2e} vs torch's {err_torch:.2e}"
    if dtype == torch.float64:
        small = y[:3, :, :4, :4].contiguous(memory_format=layout).requires_grad_()
        small = (small, scale.clone().requires_grad_())
        f = lambda a, s: batch_norm(a, s, None, None, batch_stats=True)  # noqa: E731
        assert torch.autograd.gradgradcheck(f, small)


def run_search(**over):
    cfg = resolve_search({**TINY_SEARCH, "steps_per_epoch": 2, "hessian_every": 0, **over})
    records = []
    search(cfg, records.append, progress=False, log=lambda s: None)
    return records


def test_a_3_epoch_search_is_the_same_with_either_impl():
    ref = run_search(impl="reference")
    fast = run_search(impl="fast")
    assert [r.epoch for r in fast] == [0, 1, 2, 3]
    for r, f in zip(ref, fast):
        assert f.arch == r.arch
        np.testing.assert_allclose(f.alpha, r.alpha, rtol=0, atol=1e-4)
        assert f.valid_loss == pytest.approx(r.valid_loss, rel=1e-4)
    assert not np.array_equal(fast[0].alpha, fast[-1].alpha)  # the search moved alpha


def test_fast_is_the_default_and_bf16_and_channels_last_run():
    cfg = resolve_search({})
    assert (cfg.impl, cfg.precision) == ("fast", "fp32") and not (cfg.compile or cfg.channels_last)
    with pytest.raises(SpecError, match="search.precision.*fp32, bf16"):
        resolve_search({"precision": "fp16"})
    with pytest.raises(SpecError, match="search.compile: expected true or false"):
        resolve_search({"compile": "yes"})
    with pytest.raises(SpecError, match="search.compile_mode.*reduce-overhead"):
        resolve_search({"compile": True, "compile_mode": "cudagraphs"})
    assert resolve_search({"compile_mode": "reduce-overhead"}).compile_mode == "reduce-overhead"
    records = run_search(precision="bf16", epochs=1, steps_per_epoch=1)
    assert np.isfinite(records[-1].train_loss)
    # channels-last through the whole loop: steps, evaluation and the Hessian
    one_epoch = {"epochs": 1, "steps_per_epoch": 1, "hessian_every": 1}
    cfg = resolve_search({**TINY_SEARCH, **one_epoch, "channels_last": True})
    records, lines = [], []
    search(cfg, records.append, progress=False, log=lines.append)
    assert np.isfinite(records[-1].train_loss) and np.isfinite(records[-1].hessian_eig)
    assert "warning: search.channels_last on CPU" in lines[0]
