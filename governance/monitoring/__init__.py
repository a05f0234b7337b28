"""After approval: continuing review, reminders, incidents, scheduled re-audits and drift."""
