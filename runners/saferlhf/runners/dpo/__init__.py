"""The `dpo` stage (Rafailov et al. 2023) and the code it shares with `safe_dpo` (SafeDPO,
arXiv:2505.20065): losses (loss.py), pair ordering and batching (pairs.py), training (train.py)."""
