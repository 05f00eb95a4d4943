"""`cdi-uploadproxy`: the external upload endpoint. Checks each request's upload token, finds the PVC's
upload server, and streams the request to it over mutual TLS.

    auth         the Bearer token check (signature, expiry, purpose, intended PVC) via `cdi.tokens`
    resolver     the seam to the cluster: where a PVC's upload server is, and whether it is ready
    forward      the streaming reverse proxy with upstream's readiness wait and archive rewrite
    app          routes, CORS and `build_app`, the factory `cdi serve` runs in-process
    credentials  certificates and token keys loaded from files and reloaded when they rotate
    main         the standalone entrypoint and `ProxyServer`

Never imports `importer` (the upload server) or the control plane: the shared contract lives in
`cdi.contracts.upload_protocol` and `cdi.tokens`.
"""
