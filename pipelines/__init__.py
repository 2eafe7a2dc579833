"""Jobs behind the ``beltcast`` command line: one module per verb."""
