"""The seam between controllers and the world: a small `Cluster` protocol with Kubernetes semantics
(`protocol`), its errors (`errors`), the table of kinds it serves (`kinds`), and its backends: the
embedded SQLite store (`cdi.embedded.store`) and, later, a real API server."""
