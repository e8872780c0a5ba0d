"""`python -m runners.cost --config stage.json [--local_rank N]`"""

import sys

from runners.common.stage_cli import main
from runners.cost.train import run

if __name__ == "__main__":
    sys.exit(main("cost", run))
