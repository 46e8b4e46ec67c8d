import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gr_toolkit.losses import LOSSES, LossContext, build_losses
from gr_toolkit.losses.alignment import AlignmentLoss, parent_pairs
from gr_toolkit.losses.generation import GenerationLoss
from gr_toolkit.losses.ranking import PrefixSampler, pairwise_margin_loss
from gr_toolkit.models.base import SourceBatch
from gr_toolkit.models.seater import SeaterConfig, SeaterModel
from tests.seater_helpers import binary_tree_index


def _ctx(items=(0, 5, 6), seed=0):
    torch.manual_seed(seed)
    idx = binary_tree_index(8)
    model = SeaterModel(SeaterConfig(d_model=16, heads=2, ffn=32, dropout=0.0), idx.decoder_vocab_size, 8, "history",
                        leaf_is_item=True)
    items = torch.tensor(items)
    batch = SourceBatch(torch.randint(0, 8, (len(items), 4)), torch.ones(len(items), 4, dtype=torch.bool), "history")
    targets = idx.decoder_targets(items)
    memory = model.encode(batch)
    dec_in = torch.cat([torch.full((len(items), 1), idx.bos_id), targets[:, :-1]], 1)
    hidden = model.decode(memory, batch, dec_in)
    return LossContext(model, idx, batch, items, targets, memory, hidden), idx, model


def test_registry_and_builder():
    assert set(LOSSES.names()) >= {"gen", "align", "rank"}
    losses = build_losses("gen,align,rank", hidden_size=16, options={"align": {"tau": 0.5, "weight": 0.03}})
    assert [lo.name for lo in losses] == ["gen", "align", "rank"]
    assert losses[1].tau == 0.5 and losses[2].W.shape == (16, 16)
    with pytest.raises(ValueError, match="no option"):
        build_losses("gen", 16, {"gen": {"tau": 1.0}})
    with pytest.raises(KeyError, match="unknown loss"):
        build_losses("gen,nope", 16)


def test_generation_loss_is_softmax_over_children_only():
    ctx, idx, model = _ctx()
    loss = GenerationLoss()(ctx)
    full = model.score(ctx.hidden, None)  # [B, T, V+2]
    expected = []
    for b, item in enumerate(ctx.target_items.tolist()):
        code = idx.codes[item]
        for t in range(3):
            parent = idx.bos_id if t == 0 else code[t - 1]
            children = [c for c in range(idx.vocab_size) if (idx.token_parent[c] == parent) or
                        (t == 0 and idx.token_parent[c] == -1 and idx.token_level[c] == 0)]
            lg = full[b, t, children]
            expected.append(-(lg[children.index(code[t])] - torch.logsumexp(lg, 0)))
    torch.testing.assert_close(loss, torch.stack(expected).mean())
    # full softmax: plain cross-entropy over the whole decoder vocabulary
    torch.testing.assert_close(GenerationLoss(full_softmax=True)(ctx),
                               F.cross_entropy(full.reshape(-1, full.shape[-1]), ctx.targets.reshape(-1)))


def test_generation_loss_rejects_targets_of_another_index():
    ctx, idx, _ = _ctx()
    ctx.targets = ctx.targets.clone()
    ctx.targets[0, 1] = 12  # token 12 is not a child of token 8
    with pytest.raises(ValueError, match="not (an )?allowed"):
        GenerationLoss()(ctx)


def test_alignment_pairs_and_hand_computed_value():
    ctx, idx, model = _ctx(items=(0, 5))
    pairs = parent_pairs(ctx.targets, idx.bos_id, idx.eos_id)
    bos = idx.bos_id
    assert sorted(map(tuple, pairs.tolist())) == sorted([(8, bos), (10, 8), (0, 10), (9, bos), (12, 9), (5, 12)])
    assert len(parent_pairs(ctx.targets, bos, idx.eos_id, root="skip")) == 4
    tau = 0.2
    e = F.normalize(model.token_embeddings(), dim=-1)
    batch_tokens = [0, 5, 8, 9, 10, 12, bos]
    family = {(8, bos): [10], (10, 8): [0], (0, 10): [], (9, bos): [12], (12, 9): [5], (5, 12): []}
    for exclude in (True, False):
        terms = []
        for (j, p), kids in family.items():
            others = [k for k in batch_tokens if k != j and (not exclude or k not in kids)]
            logits = torch.stack([e[j] @ e[k] / tau for k in others])
            terms.append(-(logits[others.index(p)] - torch.logsumexp(logits, 0)))
        got = AlignmentLoss(tau=tau, exclude_family=exclude)(ctx)
        torch.testing.assert_close(got, torch.stack(terms).mean())


def test_alignment_excludes_children_and_parent_family():
    from gr_toolkit.losses.alignment import alignment_logits

    emb = torch.randn(20, 4)
    pairs = torch.tensor([[8, 14], [10, 8], [0, 10], [3, 10]])  # 14 plays BOS
    logits, pos = alignment_logits(emb, pairs, 1.0, exclude_family=True)
    toks = torch.unique(pairs.reshape(-1)).tolist()  # [0, 3, 8, 10, 14]
    row = 1  # pair (10, 8): children 0 and 3 excluded, parent 8 is the positive
    assert toks[pos[row]] == 8
    masked = {toks[i] for i in range(len(toks)) if torch.isinf(logits[row, i])}
    assert masked == {10, 0, 3}


def test_prefix_sampler_gives_requested_shared_lengths():
    idx = binary_tree_index(16)  # depth 4
    smp = PrefixSampler(idx.codes, idx.lengths)
    items = torch.arange(16).repeat(50)
    shared = smp.shared_lengths(items, 4, "deepest")
    assert shared[0].tolist() == [3, 2, 1, 0]
    assert smp.shared_lengths(items, 5, "shallowest")[0].tolist() == [0, 1, 2, 3, -1]
    negs, valid = smp.sample(items, shared, torch.Generator().manual_seed(0))
    assert valid.all()
    codes = torch.from_numpy(idx.codes)
    same = (codes[items].unsqueeze(1) == codes[negs]).long().cumprod(-1).sum(-1)  # shared prefix length
    assert torch.equal(same, shared)
    # uniform over the right set: sharing 1 token with item 0 = the 4 items 4..7
    sel = negs[items == 0][:, 2]
    assert set(sel.tolist()) == {4, 5, 6, 7}


def test_prefix_sampler_masks_impossible_prefixes():
    codes = np.array([[0, 2], [0, 3], [1, 4]])
    smp = PrefixSampler(codes, np.array([2, 2, 2]))
    negs, valid = smp.sample(torch.tensor([2, 0]), torch.tensor([[1, 0], [1, 0]]))
    # item 2 is the only child of token 1: no item shares exactly 1 token with it
    assert valid.tolist() == [[False, True], [True, True]]
    assert negs[0, 1].item() in (0, 1) and negs[1].tolist() == [1, 2]


def test_pairwise_margin_loss_hand_value():
    score = torch.tensor([[0.5, 0.7, 0.2]])
    num = torch.tensor([[3.0, 2.0, 0.0]])
    ok = torch.ones(1, 3, dtype=torch.bool)
    beta = 0.1
    # pairs: (0>1): 0.7-0.5+0.1 = 0.3 ; (0>2): 0.2-0.5+0.3 = 0 ; (1>2): 0.2-0.7+0.2 = 0 -> 0.3
    assert math.isclose(pairwise_margin_loss(score, num, ok, beta).item(), 0.3, rel_tol=1e-6)
    ok[0, 1] = False
    assert pairwise_margin_loss(score, num, ok, beta).item() == 0.0


@pytest.mark.parametrize("name", ["gen", "align", "rank"])
def test_gradients_flow(name):
    ctx, idx, model = _ctx()
    loss_fn = build_losses(name, 16)[0]
    loss = loss_fn(ctx)
    assert torch.isfinite(loss)
    loss.backward()
    assert model.token_emb.weight.grad is not None and model.token_emb.weight.grad.abs().sum() > 0
    if name == "rank":
        assert loss.item() > 0
        assert loss_fn.W.grad is not None and loss_fn.W.grad.abs().sum() > 0


def test_rank_loss_with_variable_length_codes():
    from gr_toolkit.data.types import Catalog
    from gr_toolkit.identifiers.codes import CodeIndex

    codes = np.array([[0, 2], [0, 3], [1, -1], [0, -1]])
    idx = CodeIndex("rq", codes, np.array([2, 2, 1, 1]), 4, np.full(4, -1), np.array([0, 0, 1, 1]),
                    Catalog("c", list("abcd")).fingerprint())
    torch.manual_seed(0)
    model = SeaterModel(SeaterConfig(d_model=8, heads=2, ffn=16), idx.decoder_vocab_size, 4, "history")
    items = torch.tensor([0, 2, 3])
    batch = SourceBatch(torch.randint(0, 4, (3, 2)), torch.ones(3, 2, dtype=torch.bool), "history")
    targets = idx.decoder_targets(items)
    mem = model.encode(batch)
    hidden = model.decode(mem, batch, torch.cat([torch.full((3, 1), idx.bos_id), targets[:, :-1]], 1))
    ctx = LossContext(model, idx, batch, items, targets, mem, hidden)
    for fn in build_losses("gen,align,rank", 8):
        assert torch.isfinite(fn(ctx))


def test_rank_loss_can_use_a_subset_of_rows():
    ctx, idx, model = _ctx(items=(0, 5, 6, 7))
    loss_fn = build_losses("rank", 16, {"rank": {"max_examples": 2}})[0]
    torch.manual_seed(0)
    part = loss_fn(ctx)
    assert torch.isfinite(part)
    # identical to the loss computed on a context holding only the first two rows
    ctx2, _, _ = _ctx(items=(0, 5))
    ctx2.model = model
    ctx2.batch = SourceBatch(ctx.batch.tokens[:2], ctx.batch.mask[:2], "history")
    ctx2.memory = model.encode(ctx2.batch)
    torch.manual_seed(0)
    torch.testing.assert_close(part, loss_fn(ctx2))
