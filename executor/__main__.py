"""``python -m cc_executor.executor`` is ``ccx``."""

import sys

from cc_executor.executor.cli import main

sys.exit(main())
