"""AdamW's kernel choice (OptimSpec.implementation): the same update, the fast kernel by default."""

from __future__ import annotations

import pytest
import torch
from saferlhf.runners.common.config import OptimSpec
from saferlhf.runners.common.optim import adamw_kernel, build_optimizer


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16),
                               torch.nn.Linear(16, 1))


def test_auto_picks_the_fused_kernel_on_cpu_and_each_choice_is_honoured():
    groups = [{"params": list(_model().parameters())}]
    assert adamw_kernel("auto", groups) == {"fused": True}
    assert adamw_kernel("fused", groups) == {"fused": True}
    assert adamw_kernel("foreach", groups) == {"foreach": True}
    assert adamw_kernel("for_loop", groups) == {"foreach": False}
    meta = [{"params": [torch.nn.Parameter(torch.zeros(2, device="meta"))]}]
    assert adamw_kernel("auto", meta) == {}  # no fused kernel there: torch's own default


@pytest.mark.parametrize("implementation", ["auto", "foreach"])
def test_every_kernel_takes_the_same_steps_as_the_per_tensor_loop(implementation):
    x, y = torch.randn(32, 8), torch.randn(32, 1)
    finals = {}
    for name in ("for_loop", implementation):
        model = _model()
        opt = build_optimizer(model, OptimSpec(lr=1e-2, weight_decay=0.1,
                                               implementation=name))
        for _ in range(5):
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
        finals[name] = [p.detach().clone() for p in model.parameters()]
    for a, b in zip(finals["for_loop"], finals[implementation], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
