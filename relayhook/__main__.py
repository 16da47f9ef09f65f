"""`python -m relayhook`: the same as the `relayhook` command."""

from relayhook.cli import main

raise SystemExit(main())
