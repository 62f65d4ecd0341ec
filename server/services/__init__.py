"""Use cases: one unit of work each, given the caller's Principal. The only place security, crypto and audit meet."""
