import sys

from zcap.cli import main

sys.exit(main())
