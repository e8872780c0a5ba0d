"""`saferlhf`: the command line of the control plane (docs/cli.md).

Every failure a user can cause — bad spec, unreachable server, denied access, unknown job — ends
as one paragraph on stderr and a non-zero exit code (saferlhf.service.cli.client), never a
traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TextIO

from saferlhf.service.cli import commands
from saferlhf.service.cli.client import DEFAULT_SERVER, EXIT_INVALID, CliError
from saferlhf.service.errors import ServiceError, SpecError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="saferlhf", description="Safe RLHF control plane.")
    p.add_argument("--server", default=os.environ.get("SAFERLHF_SERVER", DEFAULT_SERVER),
                   help="host:port of the service (env SAFERLHF_SERVER)")
    p.add_argument("--token", default=os.environ.get("SAFERLHF_TOKEN"),
                   help="bearer token (env SAFERLHF_TOKEN)")
    p.add_argument("--ca-file", default=os.environ.get("SAFERLHF_CA_FILE"),
                   help="PEM CA that signed the server's certificate: use TLS "
                        "(env SAFERLHF_CA_FILE)")
    p.add_argument("--cert-file", default=os.environ.get("SAFERLHF_CERT_FILE"),
                   help="PEM client certificate for a mutual-TLS service (env SAFERLHF_CERT_FILE)")
    p.add_argument("--key-file", default=os.environ.get("SAFERLHF_KEY_FILE"),
                   help="PEM key of --cert-file (env SAFERLHF_KEY_FILE)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    # The connection options are accepted after the command too (`saferlhf get J --server X`).
    common = argparse.ArgumentParser(add_help=False)
    for flag in ("--server", "--token", "--ca-file", "--cert-file", "--key-file"):
        common.add_argument(flag, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add = sub.add_parser
    sub.add_parser = lambda *a, **kw: _add(*a, parents=[common], **kw)  # type: ignore[method-assign]

    def out(sp: argparse.ArgumentParser, default: str = "text") -> None:
        sp.add_argument("-o", "--output", choices=["text", "json", "yaml"], default=default)

    s = sub.add_parser("serve", help="run the service in the foreground")
    s.add_argument("--config", help="settings YAML (env SAFERLHF_* override it)")
    s.add_argument("--listen", help="gRPC host:port (default 127.0.0.1:50051)")
    s.add_argument("--metrics-address", help="/metrics host:port (default 127.0.0.1:9464)")
    s.add_argument("--state-dir", help="state directory (default ./.saferlhf)")
    s.add_argument("--database-url", help="sqlite:///… or postgresql://…")
    s.add_argument("--executor", choices=["local", "kubernetes"])
    s.add_argument("--tokens-file", help="hashed bearer tokens (saferlhf tokens create)")
    s.add_argument("--allow-insecure-bind", action="store_true", default=None,
                   help="allow a non-loopback bind without tokens or TLS")

    s = sub.add_parser("run", help="run a spec end to end in this process and report")
    s.add_argument("spec")
    s.add_argument("--state-dir", default="./.saferlhf")
    s.add_argument("--config", help="settings YAML")
    out(s)

    s = sub.add_parser("submit", help="submit a spec to the server")
    s.add_argument("spec")
    s.add_argument("--project", default="")
    s.add_argument("--request-id", default="", help="idempotency key (default: a new UUID)")
    s.add_argument("--wait", action="store_true", help="watch until the job ends")
    out(s)

    s = sub.add_parser("get", help="show a job")
    s.add_argument("job")
    out(s)

    s = sub.add_parser("list", help="list jobs")
    s.add_argument("--filter", default="", help='e.g. "state=RUNNING project=safety"')
    s.add_argument("--page-size", type=int, default=50)
    s.add_argument("--all", action="store_true", help="follow every page")
    out(s)

    s = sub.add_parser("watch", help="follow a job live")
    s.add_argument("job")
    s.add_argument("--after", type=int, default=0, help="resume after this cursor")
    out(s)

    s = sub.add_parser("logs", help="print a stage's log")
    s.add_argument("job")
    s.add_argument("stage", help='e.g. "r1/sft"')
    s.add_argument("-f", "--follow", action="store_true")

    s = sub.add_parser("cancel", help="cancel a job")
    s.add_argument("job")
    s.add_argument("--reason", default="")
    out(s)

    s = sub.add_parser("retry", help="re-run a failed job from its failed stages")
    s.add_argument("job")
    out(s)

    for name, text in (("approve", "approve a gate awaiting approval"),
                       ("reject", "reject a gate awaiting approval")):
        s = sub.add_parser(name, help=text)
        s.add_argument("job")
        s.add_argument("gate", help='e.g. "r1/eval/1"')
        s.add_argument("--comment", default="")
        out(s)

    s = sub.add_parser("labels", help="export unlabelled samples / import labels of a round")
    lsub = s.add_subparsers(dest="labels_command", required=True)
    e = lsub.add_parser("export")
    e.add_argument("job")
    e.add_argument("--round", type=int, required=True)
    e.add_argument("--file", help="where to write (default: the server's file name)")
    i = lsub.add_parser("import")
    i.add_argument("job")
    i.add_argument("file")
    i.add_argument("--round", type=int, required=True)

    s = sub.add_parser("validate", help="validate a spec offline")
    s.add_argument("spec")
    s.add_argument("--no-data-check", action="store_true", help="skip reading data files")
    s.add_argument("--artifacts-root", default=None)

    s = sub.add_parser("plan", help="estimate each stage's GPU memory (offline)")
    s.add_argument("spec")
    s.add_argument("--no-data-check", action="store_true", help="skip reading data files")
    s.add_argument("--artifacts-root", default=None)
    out(s)

    s = sub.add_parser("schema", help="print the job spec's JSON Schema")
    out(s, "json")

    s = sub.add_parser("tokens", help="manage bearer tokens")
    tsub = s.add_subparsers(dest="tokens_command", required=True)
    c = tsub.add_parser("create", help="create a token (printed once; only its hash is stored)")
    c.add_argument("--project", required=True, help='project name, or "*" for all')
    c.add_argument("--role", required=True, choices=["read", "write", "admin"])
    c.add_argument("--name", default=None, help="who holds it (default: project-role)")
    c.add_argument("--tokens-file", default=os.environ.get("SAFERLHF_TOKENS_FILE"),
                   help="the tokens file (env SAFERLHF_TOKENS_FILE)")
    return p


def _spec_error_text(err: SpecError) -> str:
    head = err.message.splitlines()[0] if err.message else "invalid input"
    lines = [f"  {v.field}: {v.description}" + (f" (line {v.line})" if v.line else "")
             for v in err.violations]
    if head.endswith(":") or not lines:
        return head + ("\n" + "\n".join(lines) if lines else "")
    return head + "\n" + "\n".join(lines)


def dispatch(args: argparse.Namespace, out: TextIO) -> int:
    """Run the command `args` names: `serve`/`run` start the service (loaded only for them)."""
    if args.command in ("serve", "run"):
        from saferlhf.service.cli import serve

        return serve.cmd_serve(args, out) if args.command == "serve" else serve.cmd_run(args, out)
    return commands.COMMANDS[args.command](args, out)


def main(argv: list[str] | None = None, *, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    logging.basicConfig(level=os.environ.get("SAFERLHF_LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed usage
        return int(exc.code or 0) and EXIT_INVALID
    try:
        return dispatch(args, out)
    except CliError as exc:
        err.write(f"saferlhf: {exc.message}\n")
        return exc.exit_code
    except SpecError as exc:
        err.write(f"saferlhf: {_spec_error_text(exc)}\n")
        return EXIT_INVALID
    except ServiceError as exc:
        err.write(f"saferlhf: {exc.message}\n")
        return 1
    except KeyboardInterrupt:
        err.write("saferlhf: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: still one paragraph, the traceback only on request
        logging.getLogger("saferlhf").debug("unexpected error", exc_info=True)
        err.write(f"saferlhf: internal error ({type(exc).__name__}: {exc}). Rerun with "
                  "SAFERLHF_LOG_LEVEL=DEBUG for the traceback, and please report it.\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
