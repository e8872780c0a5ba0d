"""Byte-level BPE tokenizers for the builtin tiny models (reference §1.3 special tokens).

A builtin model has no tokenizer of its own: we train one once, on the job's SFT texts, and save it
with the model so that every later stage (reward, cost, PPO-Lag, evaluate) shares the same ids.
The special tokens are the reference's: `<pad>`, `<s>`, `</s>`, `<unk>`; the prompt template appends
EOS as the literal string `</s>`, which the tokenizer maps to the EOS id.

transformers 5 pitfall (environment.md): never build GPT2TokenizerFast from vocab/merges *files*
(it silently yields a vocab of size 1); we wrap the trained `tokenizers.Tokenizer` object directly.
"""

from __future__ import annotations

from collections.abc import Iterable

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, model_max_length: int):
    """Train a byte-level BPE tokenizer on `texts` and wrap it for transformers.

    Returns a `PreTrainedTokenizerFast` with pad/bos/eos/unk set, right padding (reference §2) and
    `model_max_length` = the model's context. Deterministic for the same texts and vocab size.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        model_max_length=model_max_length,
        padding_side="right",
    )


def ensure_special_tokens(tokenizer) -> int:
    """Add any missing pad/eos/bos/unk token (reference §1.3). Returns how many were added."""
    missing = {}
    for attr, token in (("pad_token", PAD), ("eos_token", EOS), ("bos_token", BOS),
                        ("unk_token", UNK)):
        if getattr(tokenizer, attr, None) is None:
            missing[attr] = token
    if not missing:
        return 0
    return tokenizer.add_special_tokens(missing)
