"""`python -m saferlhf.runners.collect --config stage.json` — the collect stage
(saferlhf.runners.collect.run).

`python -m saferlhf.runners.collect import --export E --labels L --out O` validates a labels file
(JSONL or
a Label Studio export) against an export and writes the labelled PKU-SafeRLHF JSONL; bad labels
exit 2 with one line naming the file, row and field.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from saferlhf.runners.common.errors import EXIT_INVALID, InvalidInputError


def import_main(argv: list[str]) -> int:
    from saferlhf.runners.collect.labels import merge_labels, write_labelled

    parser = argparse.ArgumentParser(prog="python -m saferlhf.runners.collect import")
    parser.add_argument("--export", required=True, help="export.jsonl written by the stage")
    parser.add_argument("--labels", required=True, help="labels JSONL or Label Studio JSON export")
    parser.add_argument("--out", required=True, help="labelled PKU-SafeRLHF JSONL to write")
    parser.add_argument("--allow-partial", action="store_true",
                        help="keep only the labelled pairs instead of requiring all")
    args = parser.parse_args(argv)
    try:
        labels = Path(args.labels)
        if not labels.is_file():
            raise InvalidInputError("labels file not found", file=args.labels)
        rows = merge_labels(args.export, labels.read_bytes(), labels_name=args.labels,
                            allow_partial=args.allow_partial)
    except InvalidInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_INVALID
    write_labelled(rows, args.out)
    print(f"wrote {len(rows)} labelled pairs to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["import"]:
        return import_main(argv[1:])
    from saferlhf.runners.collect.run import run
    from saferlhf.runners.common.stage_cli import main as stage_main

    return stage_main("collect", with_sink(run), argv)


def with_sink(run):
    """Adapt `run(config, sink)` to the stage CLI: rank 0 only (a single-process stage)."""

    def entry(config, local_rank: int) -> None:
        from saferlhf.runners.common.dist import is_rank0
        from saferlhf.runners.common.events import EventSink

        if not is_rank0():
            return
        sink = EventSink(config.output_dir)
        try:
            run(config, sink)
        except Exception as e:
            sink.log(str(e), level="error")
            raise
        finally:
            sink.close()

    return entry


if __name__ == "__main__":
    sys.exit(main())
