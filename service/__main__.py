"""`python -m service`: the `saferlhf` command line."""

from service.cli.main import main

raise SystemExit(main())
