from gr_toolkit.identifiers import rq  # noqa: F401  (registers the 'rq' scheme)
