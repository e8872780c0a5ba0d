"""`python -m saferlhf.service`: the `saferlhf` command line."""

from saferlhf.service.cli.main import main

raise SystemExit(main())
