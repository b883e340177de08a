"""``python -m sbi_symmetry``: the same as the ``sbi-symmetry`` command."""

import sys

from sbi_symmetry.cli import main

sys.exit(main())
