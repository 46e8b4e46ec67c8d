"""Identifier schemes. Importing a scheme module registers its scheme(s) in ``SCHEMES``.

Add a new scheme module as one more line below (keep the list sorted).
"""

import gr_toolkit.identifiers.ablations  # noqa: F401  ('random', 'atomic')
import gr_toolkit.identifiers.lexical  # noqa: F401  ('lexical')
import gr_toolkit.identifiers.rq  # noqa: F401  ('rq')
import gr_toolkit.identifiers.tree  # noqa: F401  ('seater', 'seater-imbalanced', 'seater-random')
