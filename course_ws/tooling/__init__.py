"""Course tooling: exercise checks (:mod:`.checks`), where exercises live (:mod:`.exercises`),
and the environment self-check (:mod:`.doctor`). Servers never import this package."""
