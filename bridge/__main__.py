"""`python -m bridge ...`: the `bridge` command."""

import sys

from bridge.commands.main import main

sys.exit(main())
