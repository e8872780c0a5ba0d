"""The `saferlhf` command line (docs/cli.md). The CLI prints; nothing below saferlhf.service.cli
does."""
