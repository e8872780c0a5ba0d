"""Golden values, computed by hand from the formulas in saferlhf.runners.dpo.loss (DPO, Rafailov et
al. 2023 eq. 7; SafeDPO, arXiv:2505.20065 §4), on tensors of a few pairs — including each case
the SafeDPO transformation treats differently — plus gradients and split-batch invariance."""

import math

import pytest
import torch
from saferlhf.runners.dpo.loss import (
    DROP,
    KEEP,
    SWAP,
    dpo_loss,
    safe_dpo_loss,
    safe_dpo_order,
    safe_dpo_transform,
    sequence_logprobs,
)


def nls(x: float) -> float:
    """−log σ(x), by hand."""
    return math.log1p(math.exp(-x))


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def b(*values: bool) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.bool)


def test_sequence_logprob_sums_the_response_tokens_only():
    # Position 0 predicts token 1 with p = 3/4; position 1 predicts token 0 with p = 2/3.
    logits = torch.tensor([[[0.0, math.log(3.0)], [math.log(2.0), 0.0], [5.0, -5.0]],
                           [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])  # (2, 3, 2)
    labels = torch.tensor([[-100, 1, 0], [-100, -100, -100]])  # row 2: no response token
    got = sequence_logprobs(logits, labels)
    assert got.tolist() == pytest.approx([math.log(3 / 4) + math.log(2 / 3), 0.0], abs=1e-6)
    assert got[0].item() == pytest.approx(math.log(0.5), abs=1e-6)


def test_dpo_loss_matches_the_hand_computed_value():
    # β = 0.5; ρ_w = [0.5, -0.5], ρ_l = [-0.5, 0.5] → β(ρ_w − ρ_l) = [0.5, -0.5]
    out = dpo_loss(t(-1.0, -2.0), t(-2.0, -1.0), t(-1.5, -1.5), t(-1.5, -1.5), beta=0.5)
    expected = (nls(0.5) + nls(-0.5)) / 2
    assert out.loss.item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.724077, abs=1e-6)
    assert out.losses.tolist() == pytest.approx([nls(0.5), nls(-0.5)], abs=1e-6)
    assert out.chosen_rewards.tolist() == pytest.approx([0.25, -0.25])
    assert out.rejected_rewards.tolist() == pytest.approx([-0.25, 0.25])
    assert out.reward_accuracy().item() == pytest.approx(0.5)
    assert out.reward_margin().item() == pytest.approx(0.0, abs=1e-7)


def test_dpo_loss_is_log_two_while_the_policy_equals_the_reference():
    logp = t(-3.0, -7.5, -1.25)
    out = dpo_loss(logp, logp - 1.0, logp, logp - 1.0, beta=0.1)
    assert out.loss.item() == pytest.approx(math.log(2.0), abs=1e-6)


def test_the_safe_dpo_transformation_keeps_swaps_and_drops_by_the_harm_flags():
    cases = {(False, False): KEEP, (False, True): KEEP, (True, False): SWAP, (True, True): DROP}
    for (w_unsafe, l_unsafe), action in cases.items():
        assert safe_dpo_order(w_unsafe, l_unsafe) == action
    swap, kept = safe_dpo_transform(b(False, False, True, True), b(False, True, False, True))
    assert swap.tolist() == [False, False, True, False]
    assert kept.tolist() == [True, True, True, False]
    # the tensor form and the record form follow the same rule
    for i, (w_unsafe, l_unsafe) in enumerate(cases):
        assert (SWAP if swap[i] else KEEP if kept[i] else DROP) == safe_dpo_order(w_unsafe,
                                                                                  l_unsafe)


def _four_cases():
    """One pair of each kind; ρ_w = 1, ρ_l = 0 for all (reference log-probs 0)."""
    policy_w, policy_l = t(1.0, 1.0, 1.0, 1.0), t(0.0, 0.0, 0.0, 0.0)
    zeros = torch.zeros(4)
    h_w = b(False, False, True, True)  # safe-safe, safe≻unsafe, unsafe≻safe, unsafe-unsafe
    h_l = b(False, True, False, True)
    return policy_w, policy_l, zeros, zeros, h_w, h_l


def test_safe_dpo_loss_matches_the_hand_computed_value_for_every_case():
    # β = 1, Δ = 2.
    #   safe ≻ safe:      kept, no margin      → −log σ(1 − 0)        = nls(1)
    #   safe ≻ unsafe:    kept, margin Δ        → −log σ(1 − 0 − 2)    = nls(−1)
    #   unsafe ≻ safe:    swapped (ỹ_w = the safe loser, ρ 0; ỹ_l the unsafe winner, ρ 1),
    #                     margin Δ              → −log σ(0 − 1 − 2)    = nls(−3)
    #   unsafe ≻ unsafe:  dropped
    out = safe_dpo_loss(*_four_cases(), beta=1.0, safety_margin=2.0)
    per_pair = [nls(1.0), nls(-1.0), nls(-3.0), 0.0]
    assert out.losses.tolist() == pytest.approx(per_pair, abs=1e-6)
    assert out.loss.item() == pytest.approx(sum(per_pair) / 3, abs=1e-6)
    assert out.loss.item() == pytest.approx(1.558370, abs=1e-6)
    assert out.kept.tolist() == [True, True, True, False]
    assert out.chosen_rewards.tolist()[:3] == pytest.approx([1.0, 1.0, 0.0])  # after the swap
    assert out.rejected_rewards.tolist()[:3] == pytest.approx([0.0, 0.0, 1.0])
    assert out.reward_accuracy().item() == pytest.approx(2 / 3)


def test_safe_dpo_without_margin_on_safe_pairs_is_dpo():
    pw, pl, rw, rl = t(-1.0, -2.0), t(-2.0, -1.0), t(-1.5, -1.2), t(-1.5, -0.7)
    safe = b(False, False)
    got = safe_dpo_loss(pw, pl, rw, rl, safe, safe, beta=0.3, safety_margin=5.0)
    assert got.loss.item() == pytest.approx(dpo_loss(pw, pl, rw, rl, beta=0.3).loss.item())
    # Δ only acts on safe-vs-unsafe pairs: with it 0, a safe ≻ unsafe pair is a DPO pair too
    mixed = safe_dpo_loss(pw, pl, rw, rl, safe, b(True, True), beta=0.3, safety_margin=0.0)
    assert mixed.loss.item() == pytest.approx(got.loss.item())


def test_safe_dpo_gradients_push_the_safe_response_up_and_ignore_dropped_pairs():
    policy_w, policy_l, rw, rl, h_w, h_l = _four_cases()
    policy_w.requires_grad_(True)
    policy_l.requires_grad_(True)
    safe_dpo_loss(policy_w, policy_l, rw, rl, h_w, h_l, beta=1.0, safety_margin=2.0).loss.backward()
    gw, gl = policy_w.grad.tolist(), policy_l.grad.tolist()
    assert gw[0] < 0 and gl[0] > 0  # kept: raise the winner, lower the loser
    assert gw[1] < 0 and gl[1] > 0
    assert gw[2] > 0 and gl[2] < 0  # swapped: the (safe) loser is raised, the unsafe winner lowered
    assert gw[3] == 0 and gl[3] == 0  # dropped
    # the margin makes the safe≻unsafe pair pull harder than the same safe≻safe pair: σ(−(x−Δ))
    assert abs(gw[1]) > abs(gw[0])


def test_a_batch_of_only_dropped_pairs_gives_zero_with_a_graph():
    pw = t(-1.0).requires_grad_(True)
    out = safe_dpo_loss(pw, t(-2.0), t(0.0), t(0.0), b(True), b(True), beta=1.0,
                        safety_margin=1.0)
    assert out.loss.item() == 0.0 and out.count.item() == 0
    out.loss.backward()
    assert pw.grad.item() == 0.0


def test_split_batches_sum_then_divide_to_the_whole_batch_loss():
    policy_w, policy_l, rw, rl, h_w, h_l = _four_cases()
    policy_w = policy_w + t(0.3, -0.2, 0.5, 0.1)
    whole = safe_dpo_loss(policy_w, policy_l, rw, rl, h_w, h_l, beta=0.7, safety_margin=1.5)
    parts = [safe_dpo_loss(policy_w[s], policy_l[s], rw[s], rl[s], h_w[s], h_l[s], beta=0.7,
                           safety_margin=1.5) for s in (slice(0, 1), slice(1, 4))]
    total = sum(p.losses.sum() for p in parts) / sum(p.count for p in parts)
    assert total.item() == pytest.approx(whole.loss.item(), abs=1e-6)


def test_a_negative_safety_margin_is_refused():
    with pytest.raises(ValueError, match="safety_margin"):
        safe_dpo_loss(t(0.0), t(0.0), t(0.0), t(0.0), b(False), b(True), beta=1.0,
                      safety_margin=-1.0)
