"""The data plane: the importer entrypoint (upstream's env-var and termination-message contract), its
sources, format detection and decompression, writers, the qemu-img wrapper and validation. The
upload server and host-assisted clone source will reuse the same pipeline."""
