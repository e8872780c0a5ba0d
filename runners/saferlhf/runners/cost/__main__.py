"""`python -m saferlhf.runners.cost --config stage.json [--local_rank N]`"""

import sys

from saferlhf.runners.common.stage_cli import main
from saferlhf.runners.cost.train import run

if __name__ == "__main__":
    sys.exit(main("cost", run))
