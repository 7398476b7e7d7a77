"""``python -m lmboost.cli`` runs the command line, as ``accelerate launch -m lmboost.cli`` does."""

import sys

from lmboost.cli import main

sys.exit(main())
