"""Generate the Python gRPC code of proto/saferlhf/v1/*.proto into service/gen/ (`make proto`).

grpc_tools.protoc writes absolute imports (`from saferlhf.v1 import resources_pb2`), which only
work with service/gen on sys.path; this script rewrites them to `service.gen.saferlhf.v1` once, so
the generated package imports like any other. `--out DIR` generates elsewhere (the test that
checks the committed code is current regenerates into a temp dir and compares).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = ROOT / "proto"
PACKAGE = "saferlhf/v1"
IMPORT_PREFIX = "service.gen."
_ABS_IMPORT = re.compile(r"^from saferlhf\.v1 import ", re.MULTILINE)


def generate(out_dir: Path) -> list[Path]:
    """Run protoc on every proto of the package; returns the files written."""
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted((PROTO_ROOT / PACKAGE).glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT / PACKAGE}")
    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p.relative_to(PROTO_ROOT)) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed (see the messages above)")
    written = []
    for path in sorted((out_dir / PACKAGE).glob("*.py*")):
        text = path.read_text()
        path.write_text(_ABS_IMPORT.sub(f"from {IMPORT_PREFIX}saferlhf.v1 import ", text))
        written.append(path)
    for pkg in (out_dir / "saferlhf", out_dir / PACKAGE):
        init = pkg / "__init__.py"
        if not init.exists():
            init.write_text("")
        written.append(init)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "service" / "gen")
    args = parser.parse_args(argv)
    files = generate(args.out)
    sys.stdout.write(f"generated {len(files)} files under {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
