"""``python -m eagle_iad.cli``: the ``eagle`` command without the installed script (the tests start it so)."""

import sys

from eagle_iad.cli import main

sys.exit(main())
