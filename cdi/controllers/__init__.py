"""CDI's controllers, written against `cdi.cluster.protocol.Cluster` and `cdi.runtime.types` only, so the
same code runs on the embedded store and on a Kubernetes API server. Each reconciler observes, plans in
a pure function, then applies the plan."""
