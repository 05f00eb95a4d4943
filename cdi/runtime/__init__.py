"""The reconcile runtime: list+watch informers with a local cache, a de-duplicating rate-limited work
queue, controllers that run level-triggered `reconcile(key)` functions on several workers, and a
manager that runs them under a single-active-process lock with graceful shutdown. Controllers are
written against `cdi.runtime.types` only."""
