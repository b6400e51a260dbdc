"""minbert serve: a run behind a JSON HTTP API, with a page to try it."""
