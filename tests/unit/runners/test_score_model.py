"""The score model: end score at the last mask-1 token, padding invariance, save/load, stats."""

import pytest
import torch
from saferlhf.runners.common.config import ModelSpec
from saferlhf.runners.common.models import build_policy, save_model
from saferlhf.runners.common.score_model import (
    ScoreModel,
    end_indices,
    positions_from_mask,
    rescore,
    score_texts,
)

from tests.unit.runners.test_models import TEXTS

SEQUENCES = [
    "BEGINNING OF CONVERSATION: USER: tell me a joke ASSISTANT:sure.</s>",
    "BEGINNING OF CONVERSATION: USER: how do I bake a cake ASSISTANT:first eggs then flour "
    "then oven then eggs</s>",
    "USER: hi ASSISTANT:</s>",
]


@pytest.fixture(scope="module", params=["builtin:tiny-gpt2", "builtin:tiny-llama"])
def scorer(request):
    torch.manual_seed(0)
    spec = ModelSpec(path=request.param, n_layer=2, n_embd=32, n_head=2, vocab_size=300)
    policy, tok = build_policy(spec, TEXTS)
    model = ScoreModel.from_policy(policy, score_type="cost")
    torch.nn.init.normal_(model.score_head.weight, std=1.0)  # make scores far from zero
    model.eval()
    return model, tok


def test_end_index_is_the_last_attention_mask_one_for_left_and_right_padding():
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert end_indices(mask).tolist() == [2, 4, 4]
    assert positions_from_mask(mask)[1].tolist() == [0, 0, 0, 1, 2]


def test_a_sequence_scores_the_same_at_any_batch_size_and_either_padding_side(scorer):
    model, tok = scorer
    alone = torch.stack([score_texts(model, tok, [s])[0] for s in SEQUENCES])
    for side in ("right", "left"):
        tok.padding_side = side
        for batch_size in (1, 2, 3):
            got = score_texts(model, tok, SEQUENCES, batch_size=batch_size)
            assert torch.allclose(got, alone, atol=1e-5), (side, batch_size, got - alone)
    tok.padding_side = "right"
    assert alone.abs().min() > 1e-3  # the check is not vacuous


def test_scores_cover_every_position_and_end_scores_read_the_eos(scorer):
    model, tok = scorer
    enc = tok(SEQUENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(enc["input_ids"], enc["attention_mask"])
    assert out.scores.shape == enc["input_ids"].shape
    assert out.scores.dtype == torch.float32
    eos_at = enc["input_ids"].gather(1, out.end_index[:, None]).squeeze(1)
    assert (eos_at == tok.eos_token_id).all()
    assert torch.equal(out.end_scores, out.scores.gather(1, out.end_index[:, None]).squeeze(1))


def test_a_score_model_starts_from_a_saved_policy_with_a_zero_bias_head(tmp_path):
    policy, tok = build_policy(ModelSpec(path="builtin:tiny-gpt2", n_layer=1, n_embd=16,
                                         n_head=2, vocab_size=260), TEXTS)
    save_model(policy, tok, tmp_path / "policy")
    model = ScoreModel.from_policy(str(tmp_path / "policy"), score_type="reward")
    assert model.score_head.bias.item() == 0.0
    assert model.score_head.out_features == 1
    wte = policy.transformer.wte.weight
    assert torch.equal(model.backbone.wte.weight, wte)


def test_save_and_load_keep_weights_score_type_and_normaliser_stats(scorer, tmp_path):
    model, tok = scorer
    model.train()
    enc = tok(SEQUENCES, padding=True, return_tensors="pt")
    out = model(enc["input_ids"], enc["attention_mask"])  # EMA stats update in training mode
    model.eval()
    assert model.config.count == 3
    assert model.config.mean == pytest.approx(out.end_scores.mean().item(), abs=1e-5)
    model.save_pretrained(tmp_path, tok)
    loaded = ScoreModel.from_pretrained(tmp_path)
    loaded.eval()
    assert loaded.config.score_type == "cost"
    assert loaded.config.mean == pytest.approx(model.config.mean)
    assert loaded.config.var == pytest.approx(model.config.var)
    assert torch.allclose(score_texts(loaded, tok, SEQUENCES), score_texts(model, tok, SEQUENCES),
                          atol=1e-6)
    critic = ScoreModel.from_pretrained(tmp_path, score_type="critic")
    assert critic.config.score_type == "critic" and critic.config.normalizer_type is None


def test_cost_normalisation_scales_without_moving_the_sign(scorer):
    model, _ = scorer
    model.config.mean, model.config.var = 5.0, 4.0
    x = torch.tensor([-2.0, 0.5])
    assert model.normalize(x).tolist() == pytest.approx([-1.0, 0.25], abs=1e-6)
    model.config.score_type = "reward"
    assert model.normalize(x).tolist() == pytest.approx([-3.5, -2.25], abs=1e-6)
    model.config.score_type = "cost"


def test_loading_a_policy_folder_as_a_score_model_says_how_to_fix_it(tmp_path):
    policy, tok = build_policy(ModelSpec(path="builtin:tiny-gpt2", n_layer=1, n_embd=16,
                                         n_head=2, vocab_size=260), TEXTS)
    save_model(policy, tok, tmp_path)
    with pytest.raises(ValueError, match="from_policy"):
        ScoreModel.from_pretrained(tmp_path)


def test_rescore_appends_the_score_tokenizers_eos_to_decoded_texts(scorer):
    model, tok = scorer
    plain = [s.removesuffix("</s>") for s in SEQUENCES]
    assert torch.allclose(rescore(plain, model, tok), score_texts(model, tok, SEQUENCES),
                          atol=1e-6)


def test_normaliser_stats_travel_with_the_state_dict_for_checkpoints(scorer):
    model, _ = scorer
    model.config.mean, model.config.var, model.config.count = 1.5, 2.5, 9
    state = model.state_dict()
    model.config.mean, model.config.var, model.config.count = 0.0, 1.0, 0
    model.load_state_dict(state)
    assert (model.config.mean, model.config.var, model.config.count) == (1.5, 2.5, 9)
