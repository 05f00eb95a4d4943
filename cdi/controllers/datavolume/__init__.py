"""DataVolume controllers: rendering the claim, the import flow, and status derivation."""
