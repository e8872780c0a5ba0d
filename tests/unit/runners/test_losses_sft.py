"""SFT loss (reference §2): token mean of next-token CE over response tokens, by hand."""

import math

import pytest
import torch
from saferlhf.runners.sft.loss import IGNORE_INDEX, sft_loss, sft_loss_terms


def _case():
    logits = torch.zeros(2, 3, 3)  # (B, L, V)
    logits[0, 0] = torch.tensor([0.0, 1.0, 0.0])
    logits[1, 0] = torch.tensor([2.0, 0.0, 0.0])
    labels = torch.tensor([[IGNORE_INDEX, 1, 2], [IGNORE_INDEX, 0, IGNORE_INDEX]])
    return logits, labels


def test_sft_loss_is_the_token_mean_over_response_tokens_computed_by_hand():
    logits, labels = _case()
    # row 0: position 0 predicts 1 (logits 0,1,0), position 1 predicts 2 (uniform);
    # row 1: position 0 predicts 0 (logits 2,0,0); position 1's label is ignored.
    expected = (math.log(1 + 2 / math.e) + math.log(3) + math.log(1 + 2 * math.exp(-2))) / 3
    assert sft_loss(logits, labels).item() == pytest.approx(expected, abs=1e-6)


def test_sft_loss_ignores_prompt_and_padding_tokens():
    logits, labels = _case()
    noisy = logits.clone()
    noisy[1, 1] = torch.tensor([9.0, -9.0, 3.0])  # predicts an ignored label: must not matter
    assert sft_loss(noisy, labels).item() == pytest.approx(sft_loss(logits, labels).item())


def test_sft_loss_terms_summed_over_splits_equal_the_whole_batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 6, 11, generator=g)
    labels = torch.randint(0, 11, (4, 6), generator=g)
    labels[:, :2] = IGNORE_INDEX
    labels[2, 4:] = IGNORE_INDEX  # uneven response lengths
    n1, c1 = sft_loss_terms(logits[:2], labels[:2])
    n2, c2 = sft_loss_terms(logits[2:], labels[2:])
    assert ((n1 + n2) / (c1 + c2)).item() == pytest.approx(sft_loss(logits, labels).item(),
                                                            abs=1e-6)


def test_a_batch_without_response_tokens_gives_zero_not_nan():
    logits = torch.randn(1, 3, 4, requires_grad=True)
    loss = sft_loss(logits, torch.full((1, 3), IGNORE_INDEX))
    assert loss.item() == 0.0
    loss.backward()
