"""Backbone contract: padding invariance, causality, trimming, heads and losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lifelongrec.backbones import View, build_backbone
from lifelongrec.config import BackboneConfig
from lifelongrec.data.batches import trim_left, windows
from lifelongrec.heads import ClassHead, ItemHead

CONFIGS = {
    "nextitnet": BackboneConfig(name="nextitnet", d=16, dilations=[1, 2, 4], dropout=0.0),
    "sasrec": BackboneConfig(name="sasrec", d=16, layers=2, heads=2, max_length=64, dropout=0.0),
}


@pytest.fixture(params=list(CONFIGS))
def backbone(request):
    torch.manual_seed(0)
    return build_backbone(CONFIGS[request.param], n_items=30).eval()


def test_user_vector_ignores_padding(backbone):
    seq = torch.tensor([[5, 3, 9, 1, 7]])
    ref = backbone.user_vector(seq)
    for pad in (1, 6, 40):
        padded = torch.cat([torch.zeros(1, pad, dtype=torch.long), seq], 1)
        torch.testing.assert_close(backbone.user_vector(padded), ref, rtol=1e-5, atol=1e-6)


def test_batch_rows_with_different_padding(backbone):
    a = torch.tensor([[0, 0, 0, 4, 2, 8]])
    b = torch.tensor([[1, 2, 3, 4, 5, 6]])
    both = backbone.user_vector(torch.cat([a, b]))
    torch.testing.assert_close(both[0], backbone.user_vector(a[:, 3:])[0], rtol=1e-5, atol=1e-6)


def test_causal(backbone):
    x = torch.tensor([[3, 4, 5, 6, 7, 8]])
    y = x.clone()
    y[0, 4:] = torch.tensor([20, 21])
    hx, hy = backbone.encode(x), backbone.encode(y)
    torch.testing.assert_close(hx[:, :4], hy[:, :4])
    assert not torch.allclose(hx[:, 4:], hy[:, 4:])


def test_prompt_is_added_to_inputs(backbone):
    x = torch.tensor([[3, 4, 5]])
    p = torch.randn(1, 3, backbone.d)
    assert not torch.allclose(backbone.encode(x, View(prompt=p)), backbone.encode(x))


def test_windows_left_pad_and_trim():
    import numpy as np

    offsets = np.array([0, 3, 8])
    seq = np.array([1, 2, 3, 4, 5, 6, 7, 8])
    w = windows(offsets, seq, np.array([0, 1, 1]), np.array([3, 5, 2]), 4)
    assert w.tolist() == [[0, 1, 2, 3], [5, 6, 7, 8], [0, 0, 4, 5]]
    assert trim_left(w[[0, 2]]).tolist() == [[1, 2, 3], [0, 4, 5]]


def test_history_windows_make_every_item_a_target_once():
    import numpy as np

    from lifelongrec.data.batches import history_windows

    offsets = np.array([0, 10, 12, 19])
    seq = np.arange(1, 20)  # user 0: items 1..10, user 1: 11..12, user 2: 13..19
    user, end = np.array([0, 1, 2]), np.array([10, 2, 6])
    w = history_windows(offsets, seq, user, end, 4)[:]  # built
    assert w.tolist() == [
        [7, 8, 9, 10],
        [4, 5, 6, 7],
        [1, 2, 3, 4],  # user 0: targets 8-10, 5-7, 2-4
        [0, 0, 11, 12],  # user 1: one window
        [15, 16, 17, 18],
        [0, 13, 14, 15],  # user 2 reads only seq[:6] (13..18): targets 16-18, 14-15
    ]
    inp, tgt = w[:, :-1], w[:, 1:]
    targets = tgt[(inp > 0) & (tgt > 0)]
    expected = [i for u, e in zip(user, end) for i in seq[offsets[u] + 1 : offsets[u] + e]]
    assert sorted(targets.tolist()) == sorted(expected)  # each item after the first exactly once
    for width in (2, 3, 5, 11, 12):  # any width covers every target exactly once
        w = history_windows(offsets, seq, user, end, width)[:]
        t = w[:, 1:][(w[:, :-1] > 0) & (w[:, 1:] > 0)]
        assert sorted(t.tolist()) == sorted(expected), width


def test_described_windows_build_what_windows_builds():
    """A task holds its training windows described (user, end); indexing builds exactly the rows that
    windows() builds, and lengths/last items/selection agree with the built rows."""
    import numpy as np

    from lifelongrec.data.batches import described_windows, history_windows, windows

    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 15, size=40)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    seq = rng.integers(1, 50, size=int(offsets[-1])).astype(np.int32)
    user = rng.integers(0, 40, size=100)
    end = np.minimum(rng.integers(0, 15, size=100), lengths[user])
    for width in (1, 5, 31):
        built = windows(offsets, seq, user, end, width)
        w = described_windows(offsets, seq, user, end, width)
        assert w.shape == built.shape and len(w) == len(built)
        idx = rng.permutation(100)[:37]
        np.testing.assert_array_equal(w[idx], built[idx])
        np.testing.assert_array_equal(w.lengths(), (built > 0).sum(1))
        np.testing.assert_array_equal(w.last_items(), built[:, -1])
        mask = end % 2 == 0
        np.testing.assert_array_equal(w.select(mask)[:], built[mask])
    h = history_windows(offsets, seq, user, np.maximum(end, 1), 4)
    np.testing.assert_array_equal(h.lengths(), (h[:] > 0).sum(1))


def test_full_softmax_loss_matches_manual():
    torch.manual_seed(0)
    head = ItemHead(4, 10)
    h, t = torch.randn(6, 4), torch.randint(1, 11, (6,))
    logits = h @ head.weight[1:].T + head.bias[1:]
    torch.testing.assert_close(head.loss(h, t, "full"), F.cross_entropy(logits, t - 1))


def test_sampled_and_bpr_losses_are_finite_and_differentiable():
    torch.manual_seed(0)
    head = ItemHead(4, 10)
    h = torch.randn(6, 4, requires_grad=True)
    t = torch.randint(1, 11, (6,))
    g = torch.Generator().manual_seed(0)
    for kind in ("sampled", "bpr"):
        loss = head.loss(h, t, kind, n_neg=5, gen=g)
        loss.backward()
        assert torch.isfinite(loss) and h.grad is not None


def test_class_head():
    head = ClassHead(4, 3)
    assert head(torch.randn(2, 4)).shape == (2, 3)


@pytest.mark.parametrize("dilation", [1, 2, 4])
def test_matmul_causal_conv_equals_conv1d(dilation):
    from lifelongrec.backbones.nextitnet import CausalConv1d

    torch.manual_seed(0)
    conv = CausalConv1d(8, 3, dilation)
    x = torch.randn(2, 11, 8)
    ref = F.conv1d(F.pad(x.transpose(1, 2), (2 * dilation, 0)), conv.weight, conv.bias, dilation=dilation)
    torch.testing.assert_close(conv(x, View()), ref.transpose(1, 2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("block", ["pre_ln", "original"])
def test_sasrec_blocks_keep_the_contract(block):
    """Both SASRec block layouts are causal and padding-invariant; the original differs from pre-LN."""
    cfg = BackboneConfig(name="sasrec", d=16, layers=2, heads=2, max_length=64, block=block, init_std=0.02)
    torch.manual_seed(0)
    net = build_backbone(cfg, n_items=30).eval()
    seq = torch.tensor([[5, 3, 9, 1, 7]])
    padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), seq], 1)
    torch.testing.assert_close(net.user_vector(padded), net.user_vector(seq), rtol=1e-5, atol=1e-6)
    changed = seq.clone()
    changed[0, 4] = 11
    torch.testing.assert_close(net.encode(changed)[:, :4], net.encode(seq)[:, :4])
    torch.manual_seed(0)
    other = build_backbone(cfg.model_copy(update={"block": "original" if block == "pre_ln" else "pre_ln"}), 30)
    assert not torch.allclose(other.eval().user_vector(seq), net.user_vector(seq))


def test_init_std_sets_every_weight_matrix():
    from lifelongrec.backbones.base import normal_init

    for name in CONFIGS:
        torch.manual_seed(0)
        net = build_backbone(CONFIGS[name].model_copy(update={"init_std": 0.02}), n_items=500)
        assert net.item_embedding.weight[0].abs().sum() == 0  # padding row stays zero
        for pname, p in net.named_parameters():
            if p.dim() >= 2:
                assert abs(p.detach().std().item() - 0.02) < 0.004, pname
            elif pname.endswith("bias") and "ln" not in pname.split(".")[-2]:
                assert p.abs().sum() == 0, pname
        normal_init(net, 0.5)
        assert abs(net.item_embedding.weight.std().item() - 0.5) < 0.05


def test_tabular_encoder_speaks_the_encoder_protocol():
    """Named-tensor batches let a tabular encoder stand where a sequence backbone stands: the same
    heads and losses run on its user vectors."""
    from lifelongrec.backbones.tabular import TabularEncoder
    from lifelongrec.heads import BinaryHead
    from lifelongrec.tasknet import TaskNet

    torch.manual_seed(0)
    enc = TabularEncoder([5, 3, 9], d=16)
    batch = {"fields": torch.tensor([[1, 2, 3], [4, 0, 8]]), "target": torch.tensor([1, 0])}
    assert enc.states(batch).shape == (2, 1, 16)
    head = BinaryHead(16)
    net = TaskNet(enc, head, torch.nn.ModuleDict({"enc": enc, "head": head}), list(enc.parameters()))
    loss = head.loss(net.user_vectors(batch), batch["target"])
    loss.backward()
    assert all(p.grad is not None for p in enc.mlp.parameters())
    with pytest.raises(ValueError, match=r"fields must be \[B, 3\]"):
        enc.states({"fields": torch.zeros(2, 2, dtype=torch.long)})
