"""Risk classification: the deployment descriptor, the rule language, the rule engine."""
