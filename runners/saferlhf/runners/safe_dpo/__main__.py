"""`python -m saferlhf.runners.safe_dpo --config stage.json [--local_rank N]`"""

import sys

from saferlhf.runners.common.stage_cli import main
from saferlhf.runners.dpo.train import run

if __name__ == "__main__":
    sys.exit(main("safe_dpo", run))
