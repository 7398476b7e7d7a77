"""``python -m lmboost`` runs the command line."""

import sys

from lmboost.cli import main

sys.exit(main())
