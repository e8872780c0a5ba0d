"""PPO-Lagrangian (Safe RLHF), plain PPO and the reward-shaping baseline (reference §5)."""
