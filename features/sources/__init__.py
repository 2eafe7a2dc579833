"""One reader per public source. Each returns a :class:`~features.sources.base.SourceTable`
keyed by the harmonised county code (target vintage), year and variable."""
