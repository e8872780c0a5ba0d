"""Builtin tiny models, their trained tokenizer, saving and loading (offline)."""

import time

import pytest
import torch
from saferlhf.runners.common.config import ModelSpec
from saferlhf.runners.common.errors import InvalidInputError
from saferlhf.runners.common.models import build_policy, load_policy, resolve_model_path, save_model
from saferlhf.runners.common.template import format_prompt, format_training_text

TEXTS = [
    format_training_text(format_prompt(p, "</s>"), r, "</s>")
    for p, r in [("how do I bake a cake", "first eggs then flour then oven"),
                 ("tell me a joke", "sure. a cat walks into a bar"),
                 ("how do I pick a lock", "i cannot help with that")]
] * 20


@pytest.mark.parametrize("kind", ["builtin:tiny-gpt2", "builtin:tiny-llama"])
def test_a_builtin_model_saves_and_reloads_with_identical_logits_and_tokenizer(kind, tmp_path):
    spec = ModelSpec(path=kind, n_layer=2, n_embd=32, n_head=2, vocab_size=300,
                     max_position_embeddings=64)
    model, tok = build_policy(spec, TEXTS)
    assert len(tok) == model.config.vocab_size <= 300
    assert {tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token} == {
        "<pad>", "<s>", "</s>", "<unk>"}
    save_model(model, tok, tmp_path)
    model2, tok2 = load_policy(tmp_path)
    ids = tok2(TEXTS[:2], padding=True, return_tensors="pt")
    assert ids["input_ids"].tolist() == tok(TEXTS[:2], padding=True)["input_ids"]
    model.eval()
    model2.eval()
    with torch.no_grad():
        assert torch.allclose(model(**ids).logits, model2(**ids).logits, atol=1e-6)


def test_the_literal_eos_string_in_a_training_text_becomes_the_eos_id():
    _, tok = build_policy(ModelSpec(path="builtin:tiny-gpt2", n_layer=1, n_embd=16, n_head=2,
                                    vocab_size=260), TEXTS)
    ids = tok(TEXTS[0])["input_ids"]
    assert ids[-1] == tok.eos_token_id
    assert tok.decode(ids) == TEXTS[0]


def test_a_hub_id_fails_at_once_with_a_clear_message_when_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(InvalidInputError, match="HF_HUB_OFFLINE"):
        load_policy("gpt2-org/some-model", revision="abc")
    assert time.monotonic() - start < 2


def test_unknown_builtins_and_missing_folders_are_input_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="unknown builtin"):
        build_policy(ModelSpec(path="builtin:tiny-bert"), TEXTS)
    with pytest.raises(InvalidInputError, match="does not exist"):
        resolve_model_path(str(tmp_path / "nope"))
    with pytest.raises(InvalidInputError, match="no config.json"):
        resolve_model_path(str(tmp_path))


def test_max_length_is_capped_at_the_models_context():
    from saferlhf.runners.common.models import effective_max_length
    from transformers import GPT2Config

    config = GPT2Config(n_positions=128)
    assert effective_max_length(512, config) == 128
    assert effective_max_length(96, config) == 96


def test_a_builtin_tokenizer_trained_with_the_synthetic_lexicon_keeps_every_word_whole():
    """Without the lexicon, the held-out template word `should` (never in SFT text) splits into
    byte pieces shared with training words; with it every benchmark word is one token."""
    from saferlhf.runners.common.config import DataSource
    from saferlhf.runners.common.data import tokenizer_lexicon
    from saferlhf.runners.synthetic import LEXICON, dataset

    texts = [format_training_text(format_prompt(r.prompt, "</s>"), r.response, "</s>")
             for r in dataset("sft", size=2048)]
    lexicon = tokenizer_lexicon([DataSource(format="synthetic", split="sft")])
    assert "should" in LEXICON and "teach" in LEXICON and len(lexicon) == len(LEXICON)
    _, bare = build_policy(ModelSpec(path="builtin:tiny-gpt2"), texts)
    _, with_lexicon = build_policy(ModelSpec(path="builtin:tiny-gpt2"), texts + lexicon)
    assert len(bare.tokenize(" should")) > 1
    split = [w for w in LEXICON if len(with_lexicon.tokenize(f" {w}")) != 1]
    assert split == []
    assert tokenizer_lexicon([DataSource(format="pku_saferlhf", path="x.jsonl")]) == []
