"""`cdi-uploadserver`: the upload pod. Receives one image over HTTPS (mutual TLS with the upload proxy),
feeds it through the importer's pipeline, writes the termination message and exits.

    config      upstream's environment contract, parsed once
    security    the TLS context and the client-certificate name check
    gate        one upload at a time: idle → busy → done (a failure returns to idle for a retry)
    bodies      request bodies (raw or multipart) as the pipeline's chunk stream, with back-pressure
    processing  runs the pipeline, signals "validated" for async uploads, maps failures to HTTP status
    isocheck    refuses incomplete ISO images before they are committed
    resumable   the offset-addressed chunk protocol (ours)
    clonetarget the host-assisted clone endpoints (`cdi.contracts.clone_protocol`): sparse, resumable,
                digest-checked
    clonedisk   the clone's disk: extents at their offsets, holes zeroed where needed, sized and committed
    handlers    the HTTP endpoints
    main        the entrypoint: serve, wait for the result, write the termination message, exit
"""
