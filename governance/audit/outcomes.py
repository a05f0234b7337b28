"""The outcomes a gate criterion can have (one source for the verdict, the simulation and the dossier)."""

PASS, FAIL, INCONCLUSIVE, SECOND_STAGE, REPORTED = "pass", "fail", "inconclusive", "second_stage", "reported"
