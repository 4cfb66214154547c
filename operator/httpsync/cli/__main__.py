"""``python -m httpsync.cli``: the same as the ``httpsync`` command."""

import sys

from httpsync.cli.main import main

sys.exit(main())
