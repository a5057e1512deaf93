"""``python -m ccount_core`` runs the command line."""

import sys

from ccount_core.cli import main

sys.exit(main())
