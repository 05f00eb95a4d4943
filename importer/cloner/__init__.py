"""`cdi-cloner`: the host-assisted clone source (upstream's `cdi-cloner` in the `cdi-clone-source`
container). Streams the source volume's data to the target's upload server over mutual TLS, holes
skipped, resumable, with an end-to-end digest (`cdi.contracts.clone_protocol`).

    config   the source pod's environment, parsed once
    extents  where the data is, cut into deterministic extents (SEEK_DATA/SEEK_HOLE, zero detection)
    client   the protocol over HTTPS with the clone's client certificate; foreign errors translated
    sender   begin, send, resume from the acknowledged offset, finish with the digest
    main     the entrypoint: progress endpoint, termination message, exit code
"""
