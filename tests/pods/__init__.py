"""Tests of the embedded pod runner (`cdi.embedded.pods`): pure planners, then real processes."""
