"""`python -m saferlhf.runners.ppo_lag --config stage.json` (DESIGN §5): PPO-Lag, PPO or reward
shaping."""

import sys

from saferlhf.runners.ppo_lag.train import main

sys.exit(main())
