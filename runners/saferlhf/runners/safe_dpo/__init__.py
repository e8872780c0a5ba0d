"""The `safe_dpo` stage: SafeDPO (arXiv:2505.20065), run by saferlhf.runners.dpo.train with the
SafeDPO objective (saferlhf.runners.dpo.loss.safe_dpo_loss). Its own package only because the
runner contract starts a stage as `python -m saferlhf.runners.<kind>`."""
