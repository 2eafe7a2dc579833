"""Jobs behind the ``beltcast`` command line: one module per verb."""

import features  # noqa: F401  (its warning filter applies before any job imports pandera)
