"""`python -m zcap`: the `zcap` command (zcap.cli)."""

import sys

from zcap.cli import main

sys.exit(main())
