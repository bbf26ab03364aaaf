"""Course tooling: exercise checks (:mod:`.checks`), where exercises live (:mod:`.exercises`),
learners' programs run as processes for their checks (:mod:`.learner_programs`), and the
environment self-check (:mod:`.doctor`). Servers never import this package."""
