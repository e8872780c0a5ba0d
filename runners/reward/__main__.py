"""`python -m runners.reward --config stage.json [--local_rank N]`"""

import sys

from runners.common.stage_cli import main
from runners.reward.train import run

if __name__ == "__main__":
    sys.exit(main("reward", run))
