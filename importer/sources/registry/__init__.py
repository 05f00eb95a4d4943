"""The registry source: container disks from OCI / Docker distribution registries and OCI archives.

Modules, in the order an import uses them: `reference` (parse `docker://` / `oci-archive:`),
`client` + `auth` (distribution v2 over aiohttp: TLS, basic and bearer auth), `remote` / `archive`
(image stores), `manifest` + `image` (parse, pick the platform, verify digests, check the config),
`loopcalls` + `layers` + `overlay` + `blobs` (the streaming layer walk that finds `/disk/`), and
`source` (the `Source` the importer registers as `registry`).
"""

from importer.sources.registry.source import RegistrySource

__all__ = ["RegistrySource"]
