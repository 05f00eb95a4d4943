"""Test support: real servers and generated images for the component and end-to-end tests.

`tls` makes a throw-away PKI, `nginx` runs a real nginx on loopback with the listeners the HTTP
data source needs, `images` (with `disk_formats`, `compression`, `archives` and `hostile`) builds
the disk images those servers hand out. `tests/conftest.py` wires them into session fixtures;
nothing here imports project code, so the same helpers serve every layer of tests.
"""
