"""``python -m nbflow.cli``."""

import sys

from nbflow.cli.main import main

sys.exit(main())
