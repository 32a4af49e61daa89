"""`python -m tickhouse_dagster.cli`: the `tickhouse` command."""

import sys

from tickhouse_dagster.cli.commands import main

sys.exit(main())
