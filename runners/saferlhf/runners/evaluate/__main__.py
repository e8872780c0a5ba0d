"""`python -m saferlhf.runners.evaluate --config stage.json`: the evaluate stage (see run.py)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from saferlhf.runners.collect.__main__ import with_sink
    from saferlhf.runners.common.stage_cli import main as stage_main
    from saferlhf.runners.evaluate.run import run

    return stage_main("evaluate", with_sink(run), argv)


if __name__ == "__main__":
    sys.exit(main())
