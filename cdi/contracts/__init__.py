"""Cross-process contracts written once, as typed data: annotation and label keys, the importer's
environment-variable names, its termination message, and metric names. No other module spells
these strings."""
