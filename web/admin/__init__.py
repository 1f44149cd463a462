"""Admin pages: the dead-letter list of mail that could not be processed."""
