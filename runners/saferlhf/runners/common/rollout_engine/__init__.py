"""The rollout-engine seam: one interface (`RolloutEngine`) for whatever samples responses —
Hugging Face `generate` on the policy itself (`hf`) or an in-process vLLM engine (`vllm`) — used
by PPO-Lag rollouts, its safety-budget calibration, `collect` and `evaluate`.

    base.py         the interface; every engine returns the same `Rollout` as `generate` does
    assemble.py     prompt rows and sampled token ids → `Rollout` (left-padded prompt, right-padded
                    response, the reference's attention mask)
    hf.py           `generate` behind the interface
    vllm_engine.py  vLLM's offline `LLM`, in this process, with in-memory weight sync
    vllm_process.py vLLM's side effects on that process (env, RNG, threads), kept in check
    sync.py         weight sync under a deadline, timed, through the one export of an actor's
                    weights, `saferlhf.runners.common.lora.engine_weights` (LoRA: merged)
    factory.py      `build_engine(spec, ...)` from a stage's `rollout:` settings
"""
