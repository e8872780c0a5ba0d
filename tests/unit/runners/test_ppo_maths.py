"""PPO-Lagrangian maths: hand-computed goldens on 2×3 tensors (reference §5.3–§5.6)."""

from __future__ import annotations

import math

import pytest
import torch
from saferlhf.runners.ppo_lag.advantages import gae
from saferlhf.runners.ppo_lag.lagrange import (
    EpisodeCostWindow,
    LagrangeMultiplier,
    lagrange_step,
    mean_over_ranks,
)
from saferlhf.runners.ppo_lag.losses import (
    actor_loss,
    critic_loss,
    lagrangian_advantage,
    masked_mean,
    ptx_loss,
)
from saferlhf.runners.ppo_lag.shaping import (
    cost_stream,
    last_action_index,
    reward_stream,
    sequence_kl,
    shaped_end_score,
)

T = torch.tensor
OLD = T([[-1.0, -2.0, -1.0], [-0.5, -1.0, -3.0]])
REF = T([[-1.5, -1.0, -1.0], [-0.5, -2.0, -1.0]])  # k1 = [[0.5, -1, 0], [0, 1, -2]]
MASK = T([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
END = T([2.0, -3.0])


def test_last_action_index_is_the_last_unmasked_column():
    assert last_action_index(MASK).tolist() == [2, 1]


def test_reward_stream_penalises_kl_and_adds_the_end_reward_at_the_last_action():
    got = reward_stream(END, OLD, REF, MASK, kl_coeff=0.1, clip_range_score=50.0)
    assert torch.allclose(got, T([[-0.05, 0.1, 2.0], [0.0, -3.1, 0.0]]))


def test_cost_stream_adds_kl_with_a_positive_sign():
    got = cost_stream(END, OLD, REF, MASK, kl_coeff=0.1, clip_range_score=50.0)
    assert torch.allclose(got, T([[0.05, -0.1, 2.0], [0.0, 0.1 - 3.0, 0.0]]))


def test_streams_are_clipped_to_the_score_range():
    got = reward_stream(END, OLD, REF, MASK, kl_coeff=0.1, clip_range_score=1.0)
    assert torch.allclose(got, T([[-0.05, 0.1, 1.0], [0.0, -1.0, 0.0]]))


def test_a_fully_masked_row_gets_no_reward():
    mask = T([[0.0, 0.0, 0.0]])
    got = reward_stream(T([5.0]), OLD[:1], REF[:1], mask, kl_coeff=0.1, clip_range_score=50.0)
    assert torch.equal(got, torch.zeros(1, 3))


def test_sequence_kl_sums_k1_over_valid_tokens():
    assert torch.allclose(sequence_kl(OLD, REF, MASK), T([-0.5, 1.0]))


def test_reward_shaping_subtracts_nu_times_cost():
    assert torch.allclose(shaped_end_score(T([1.0, 0.5]), T([1.0, -1.0]), 0.5), T([0.5, 1.0]))


def test_gae_matches_a_hand_computed_example():
    rewards, values = T([[1.0, 0.0, 2.0]]), T([[0.5, 1.0, 1.0]])
    adv, ret = gae(values, rewards, torch.ones(1, 3), gamma=1.0, gae_lambda=0.5)
    assert torch.allclose(adv, T([[1.75, 0.5, 1.0]]))
    assert torch.allclose(ret, T([[2.25, 1.5, 2.0]]))


def _gae_loop(values, rewards, mask, gamma, lam):
    B, n = rewards.shape
    adv = torch.zeros(B, n)
    for i in range(B):
        for t in range(n):
            total, discount = 0.0, 1.0
            for k in range(t, n):
                v_next = values[i, k + 1] * mask[i, k + 1] if k + 1 < n else 0.0
                delta = rewards[i, k] * mask[i, k] + gamma * v_next - values[i, k] * mask[i, k]
                total += discount * delta
                discount *= gamma * lam
            adv[i, t] = total
    return adv


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.5), (1.0, 0.0)])
def test_vectorised_gae_equals_the_explicit_sum_loop(gamma, lam):
    g = torch.Generator().manual_seed(0)
    values, rewards = torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)
    mask = T([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]]).float()
    adv, ret = gae(values, rewards, mask, gamma=gamma, gae_lambda=lam)
    assert torch.allclose(adv, _gae_loop(values, rewards, mask, gamma, lam), atol=1e-5)
    assert torch.allclose(ret, adv + values * mask)


def test_masked_mean_averages_each_sequence_then_the_batch():
    x = T([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert masked_mean(x, T([[1, 1, 0], [0, 0, 1]])).item() == pytest.approx(3.75)
    # a fully masked row counts as 0 (not NaN)
    assert masked_mean(x, T([[1, 1, 0], [0, 0, 0]])).item() == pytest.approx(0.75)


def test_masked_mean_of_equal_halves_is_the_mean_of_the_halves():
    g = torch.Generator().manual_seed(1)
    x, mask = torch.randn(4, 5, generator=g), (torch.rand(4, 5, generator=g) > 0.3).float()
    whole = masked_mean(x, mask)
    halves = (masked_mean(x[:2], mask[:2]) + masked_mean(x[2:], mask[2:])) / 2
    assert torch.allclose(whole, halves)


def test_critic_loss_takes_the_larger_of_clipped_and_unclipped_errors():
    loss = critic_loss(T([[1.0, 2.0]]), T([[0.0, 2.0]]), T([[3.0, 1.0]]), torch.ones(1, 2),
                       clip_range_value=0.5)
    assert loss.item() == pytest.approx(0.5 * (6.25 + 1.0) / 2)


def test_actor_loss_clips_the_ratio_for_positive_and_negative_advantages():
    new = T([[math.log(1.5), math.log(0.5)]])
    old = torch.zeros(1, 2)
    mask = torch.ones(1, 2)
    assert actor_loss(new, old, torch.ones(1, 2), mask, clip_range_ratio=0.2).item() == \
        pytest.approx(-(1.2 + 0.5) / 2)
    assert actor_loss(new, old, -torch.ones(1, 2), mask, clip_range_ratio=0.2).item() == \
        pytest.approx((1.5 + 0.8) / 2)


def test_actor_loss_gradient_flows_only_through_the_new_log_probs():
    new = torch.zeros(1, 2, requires_grad=True)
    actor_loss(new, torch.zeros(1, 2), T([[1.0, -2.0]]), torch.ones(1, 2),
               clip_range_ratio=0.2).backward()
    assert torch.allclose(new.grad, T([[-0.5, 1.0]]))


def test_lagrangian_advantage_mixes_the_streams_with_lambda():
    got = lagrangian_advantage(T([[1.0, 2.0]]), T([[2.0, -1.0]]), 1.0)
    assert torch.allclose(got, T([[-0.5, 1.5]]))
    assert torch.allclose(lagrangian_advantage(T([[1.0]]), T([[9.0]]), 0.0), T([[1.0]]))


def test_ptx_loss_is_the_token_mean_negative_log_likelihood():
    lp = T([[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0]])
    assert ptx_loss(lp, T([[0, 1, 1], [1, 0, 0]])).item() == pytest.approx((2 + 3 + 4) / 3)


def test_lambda_golden_step():
    assert lagrange_step(0.0, 0.5, 0.0, lr=0.1, lambda_max=None) == pytest.approx(0.05)


def test_lambda_is_clamped_at_lambda_max():
    start = math.log(5.0) - 0.01
    assert lagrange_step(start, 10.0, 0.0, lr=0.1, lambda_max=5.0) == pytest.approx(math.log(5.0))


def test_lambda_falls_when_episode_cost_is_below_the_threshold():
    assert lagrange_step(0.0, -0.5, 0.0, lr=0.1, lambda_max=5.0) == pytest.approx(-0.05)


def test_the_optimizer_backed_multiplier_matches_the_pure_step():
    mult = LagrangeMultiplier(lambda_init=1.0, lr=0.1, lambda_max=5.0)
    mult.step(0.5, 0.0)
    assert float(mult.log_lambda.detach()) == pytest.approx(0.05)
    for _ in range(200):
        mult.step(3.0, 0.0)
    assert mult.value == pytest.approx(5.0)
    state = mult.state_dict()
    other = LagrangeMultiplier(lambda_init=2.0, lr=0.1, lambda_max=5.0)
    other.load_state_dict(state)
    assert other.value == pytest.approx(5.0)


def test_episode_cost_window_keeps_the_last_w_costs():
    window = EpisodeCostWindow(3)
    window.extend([1.0, 2.0, 3.0, 4.0])
    assert list(window.costs) == [2.0, 3.0, 4.0]
    assert window.local_mean() == pytest.approx(3.0)
    assert EpisodeCostWindow(3).local_mean() == 0.0


def test_episode_cost_over_ranks_is_the_mean_of_the_rank_means():
    assert mean_over_ranks([1.0, 3.0]) == pytest.approx(2.0)
