"""`python -m importer` runs the importer entrypoint."""

from importer.main import main

main()
