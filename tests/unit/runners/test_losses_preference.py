"""Golden values (computed by hand from the reference §3.2 / §4 formulas) for the RM and CM losses,
plus split-batch invariance."""

import math

import pytest
import torch
from saferlhf.runners.cost.loss import (
    cost_sequence_loss,
    cost_sign,
    cost_token_loss,
    sign_accuracy,
)
from saferlhf.runners.reward.loss import (
    bt_sequence_loss,
    bt_token_loss,
    divergence_spans,
    pair_accuracy,
)


def nls(x: float) -> float:
    """−log σ(x), by hand."""
    return math.log1p(math.exp(-x))


def test_sequence_wise_bt_loss_matches_the_hand_computed_value():
    better, worse = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    expected = (nls(1.0) + nls(-2.0)) / 2 + 0.1 * (1 + 0 + 0 + 4) / 4
    assert bt_sequence_loss(better, worse, 0.1).item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(1.345095, abs=1e-5)
    assert bt_sequence_loss(better, worse, 0.0).item() == pytest.approx(expected - 0.125, abs=1e-6)


def _token_case():
    better_ids = torch.tensor([[5, 6, 7], [5, 6, 0]])  # second better sequence ends at t=1
    worse_ids = torch.tensor([[5, 8, 7], [5, 9, 9]])
    better_end, worse_end = torch.tensor([2, 1]), torch.tensor([2, 2])
    better = torch.tensor([[0.5, 1.0, 2.0], [0.0, 0.5, -1.0]])
    worse = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.5, 0.0]])
    return better_ids, worse_ids, better_end, worse_end, better, worse


def test_divergence_span_runs_from_first_difference_to_the_later_end():
    b_ids, w_ids, b_end, w_end, _, _ = _token_case()
    span = divergence_spans(b_ids, w_ids, b_end, w_end)
    assert span.tolist() == [[False, True, True], [False, True, True]]


def test_token_wise_bt_loss_matches_the_hand_computed_value():
    b_ids, w_ids, b_end, w_end, better, worse = _token_case()
    span = divergence_spans(b_ids, w_ids, b_end, w_end)
    # pair 0: differences 1, 1 over t=1..2; pair 1: -1, -1 (the pad position t=2 is included)
    pair0 = nls(1.0) + 0.1 * (1 + 4 + 0 + 1) / 4
    pair1 = nls(-1.0) + 0.1 * (0.25 + 1 + 2.25 + 0) / 4
    got = bt_token_loss(better, worse, span, 0.1).item()
    assert got == pytest.approx((pair0 + pair1) / 2, abs=1e-6)
    assert got == pytest.approx(0.932013, abs=1e-5)


def test_cost_sign_is_plus_one_for_unsafe_and_minus_one_for_safe():
    assert cost_sign(torch.tensor([True, False])).tolist() == [-1.0, 1.0]


def test_sequence_wise_cost_loss_matches_the_hand_computed_value():
    safer, unsafer = torch.tensor([-1.0, 0.5]), torch.tensor([2.0, 0.0])
    k_s = cost_sign(torch.tensor([True, False]))  # [-1, +1]
    k_u = cost_sign(torch.tensor([False, False]))  # [+1, +1]
    pair0 = nls(2.0 - (-1.0)) + nls(-1 * -1.0) + nls(1 * 2.0)
    pair1 = nls(0.0 - 0.5) + nls(1 * 0.5) + nls(1 * 0.0)
    expected = (pair0 + pair1) / 2 + 0.01 * (1 + 0.25 + 4 + 0) / 4
    got = cost_sequence_loss(safer, unsafer, k_s, k_u, 0.01).item()
    assert got == pytest.approx(expected, abs=1e-6)


def test_token_wise_cost_loss_matches_the_hand_computed_value():
    b_ids, w_ids, b_end, w_end, safer, unsafer = _token_case()
    span = divergence_spans(b_ids, w_ids, b_end, w_end)
    k_s, k_u = torch.tensor([-1.0, 1.0]), torch.tensor([1.0, 1.0])
    # pair 0 over t=1..2: safer 1.0, 2.0; unsafer 0.0, 1.0
    pair0 = ((nls(0.0 - 1.0) + nls(1.0 - 2.0)) / 2 + (nls(-1.0) + nls(-2.0)) / 2
             + (nls(0.0) + nls(1.0)) / 2 + 0.1 * (1 + 4 + 0 + 1) / 4)
    # pair 1 over t=1..2: safer 0.5, -1.0; unsafer 1.5, 0.0
    pair1 = ((nls(1.0) + nls(1.0)) / 2 + (nls(0.5) + nls(-1.0)) / 2
             + (nls(1.5) + nls(0.0)) / 2 + 0.1 * (0.25 + 1 + 2.25 + 0) / 4)
    got = cost_token_loss(safer, unsafer, k_s, k_u, span, 0.1).item()
    assert got == pytest.approx((pair0 + pair1) / 2, abs=1e-6)


def test_accuracies_count_strict_orderings_and_signs():
    assert pair_accuracy(torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 3.0])).item() \
        == pytest.approx(1 / 3)
    costs, signs = torch.tensor([0.5, -0.5, 0.2, 0.0]), torch.tensor([1.0, -1.0, -1.0, 1.0])
    assert sign_accuracy(costs, signs).item() == pytest.approx(0.5)


def test_sequence_losses_of_two_equal_halves_average_to_the_whole_batch_loss():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, generator=g), torch.randn(8, generator=g)
    k_s = cost_sign(torch.rand(8, generator=g) > 0.5)
    k_u = cost_sign(torch.rand(8, generator=g) > 0.5)
    whole = bt_sequence_loss(a, b, 0.01)
    halves = (bt_sequence_loss(a[:4], b[:4], 0.01) + bt_sequence_loss(a[4:], b[4:], 0.01)) / 2
    assert halves.item() == pytest.approx(whole.item(), abs=1e-6)
    whole_c = cost_sequence_loss(a, b, k_s, k_u, 0.01)
    halves_c = (cost_sequence_loss(a[:4], b[:4], k_s[:4], k_u[:4], 0.01)
                + cost_sequence_loss(a[4:], b[4:], k_s[4:], k_u[4:], 0.01)) / 2
    assert halves_c.item() == pytest.approx(whole_c.item(), abs=1e-6)


def test_token_losses_of_two_equal_halves_average_to_the_whole_batch_loss():
    g = torch.Generator().manual_seed(1)
    ids_a = torch.randint(0, 5, (6, 7), generator=g)
    ids_b = torch.randint(0, 5, (6, 7), generator=g)
    end_a, end_b = torch.randint(2, 7, (6,), generator=g), torch.randint(2, 7, (6,), generator=g)
    sa, sb = torch.randn(6, 7, generator=g), torch.randn(6, 7, generator=g)
    span = divergence_spans(ids_a, ids_b, end_a, end_b)
    whole = bt_token_loss(sa, sb, span, 0.05)
    halves = (bt_token_loss(sa[:3], sb[:3], span[:3], 0.05)
              + bt_token_loss(sa[3:], sb[3:], span[3:], 0.05)) / 2
    assert halves.item() == pytest.approx(whole.item(), abs=1e-6)


def test_identical_sequences_get_a_one_token_span_instead_of_an_empty_one():
    ids = torch.tensor([[1, 2, 3]])
    span = divergence_spans(ids, ids, torch.tensor([2]), torch.tensor([2]))
    assert span.tolist() == [[False, False, True]]
