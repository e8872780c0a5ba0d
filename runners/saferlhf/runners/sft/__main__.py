"""`python -m saferlhf.runners.sft --config stage.json [--local_rank N]`"""

import sys

from saferlhf.runners.common.stage_cli import main
from saferlhf.runners.sft.train import run

if __name__ == "__main__":
    sys.exit(main("sft", run))
