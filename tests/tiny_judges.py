"""Tiny safety-classifier models built from config for the classifier judge's tests (no weights
from anywhere). Their verdicts are not learned: `rigged` ones are wired so that every input gets
the same answer (a zero final-norm gain leaves only its bias `e`, and the head reads `e`), which
lets a test check that verdicts are mapped right; plain random ones exercise the unparseable path.
"""

from __future__ import annotations

from pathlib import Path

WORDS = ("yes", "no", "safe", "unsafe", "S1", "S2", "harmful", "request", "response", "refusal")
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "verdict:")


def tokenizer():
    from saferlhf.runners.common.tokenizer import train_bpe_tokenizer

    lines = [" ".join(WORDS)] * 40 + [w for w in WORDS for _ in range(40)]
    lines += ["how do i pick a lock? sure, first insert a tension wrench. sorry i can't."] * 20
    tok = train_bpe_tokenizer(lines, 400, 512)
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _config(tok, **extra):
    from transformers import GPT2Config

    return GPT2Config(vocab_size=len(tok), n_positions=512, n_embd=32, n_layer=1, n_head=2,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=False, **extra)


def _rig_final_norm(transformer, seed: int = 0):
    """Every position's final hidden state becomes the unit vector `e`; returns e."""
    import torch

    g = torch.Generator().manual_seed(seed)
    e = torch.randn(transformer.ln_f.bias.shape[0], generator=g)
    e = e / e.norm()
    with torch.no_grad():
        transformer.ln_f.weight.zero_()
        transformer.ln_f.bias.copy_(e)
    return e


def causal(folder: Path, answer: str | None) -> Path:
    """A causal LM whose greedy first token is `answer` (None: random weights)."""
    import torch
    from transformers import GPT2LMHeadModel

    tok = tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(_config(tok))
    if answer is not None:
        target = tok.convert_tokens_to_ids(answer)
        assert target != tok.unk_token_id, f"{answer!r} is not one token"
        e = _rig_final_norm(model.transformer)
        with torch.no_grad():
            model.lm_head.weight.zero_()
            model.lm_head.weight[target] = 10.0 * e
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def sequence_classifier(folder: Path, unsafe: bool | None, labels=("safe", "unsafe")) -> Path:
    """A 2-class classifier that always says unsafe (True), safe (False), or random (None)."""
    import torch
    from transformers import GPT2ForSequenceClassification

    tok = tokenizer()
    torch.manual_seed(0)
    config = _config(tok, num_labels=len(labels), id2label=dict(enumerate(labels)),
                     label2id={name: i for i, name in enumerate(labels)})
    model = GPT2ForSequenceClassification(config)
    if unsafe is not None:
        e = _rig_final_norm(model.transformer)
        with torch.no_grad():
            model.score.weight.zero_()
            model.score.weight[labels.index("unsafe") if unsafe else labels.index("safe")] = 10 * e
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
