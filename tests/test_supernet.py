import pytest
import torch
import torch.nn.functional as F

from ray_nas.spaces import nb201
from ray_nas.spaces.nb201.supernet import DiscreteNet, MixedOp, Supernet

OP_SETS = [nb201.OPS, tuple(o for o in nb201.OPS if o != "skip_connect"), ("nor_conv_3x3",)]


@pytest.mark.parametrize("ops", OP_SETS)
def test_shape_and_finite(ops):
    torch.manual_seed(0)
    net = Supernet(ops, channels=4, cells=1, num_classes=7)
    out = net(torch.randn(3, 3, 16, 16))
    assert out.shape == (3, 7) and torch.isfinite(out).all()
    assert net.alpha.shape == (6, len(ops))


@pytest.mark.parametrize("op", nb201.OPS)
def test_one_hot_alpha_selects_the_op(op):
    torch.manual_seed(0)
    mixed = MixedOp(nb201.OPS, 4, affine=False, track=False)
    x = torch.randn(2, 4, 8, 8)
    w = F.softmax(torch.tensor([100.0 if o == op else 0.0 for o in nb201.OPS]), -1)
    single = mixed.ops[nb201.OPS.index(op)](x)
    torch.testing.assert_close(mixed(x, w), single, rtol=1e-5, atol=1e-5)


def test_every_weight_gets_a_gradient_and_steps_are_separate():
    torch.manual_seed(0)
    net = Supernet(nb201.OPS, channels=4, cells=1)
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    loss = F.cross_entropy(net(x), y)
    w = net.weight_parameters()
    loss.backward(inputs=w)
    assert net.alpha.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in w)
    # the weight step changes no alpha; the alpha step changes no weight
    alpha0 = net.alpha.detach().clone()
    torch.optim.SGD(w, lr=0.1).step()
    assert torch.equal(net.alpha, alpha0)
    weights0 = [p.detach().clone() for p in w]
    F.cross_entropy(net(x), y).backward(inputs=[net.alpha])
    torch.optim.Adam([net.alpha], lr=0.1).step()
    assert not torch.equal(net.alpha, alpha0)
    assert all(torch.equal(a, b) for a, b in zip(w, weights0))


def test_arch_string_is_the_argmax():
    net = Supernet(nb201.OPS, channels=4, cells=1)
    with torch.no_grad():
        net.alpha.zero_()
        net.alpha[:, nb201.OPS.index("skip_connect")] = 1.0
    assert net.arch() == nb201.arch_string(["skip_connect"] * 6)
    assert nb201.parse_arch(net.arch()) == ("skip_connect",) * 6


def test_discrete_net_runs_for_an_arch_with_none():
    arch = nb201.arch_string(
        ["none", "nor_conv_3x3", "none", "skip_connect", "none", "avg_pool_3x3"]
    )
    out = DiscreteNet(arch, channels=4, cells=1, num_classes=5)(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 5) and torch.isfinite(out).all()


def test_arch_string_roundtrip_and_errors():
    g = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "none")
    assert nb201.parse_arch(nb201.arch_string(g)) == g
    with pytest.raises(ValueError):
        nb201.parse_arch("|foo~0|+|x~0|y~1|")
