"""The embedded mode's local kubelet and scheduler: pods run as child processes of `cdi serve`.

`PodRunner` (in `runner`) reconciles Pods: it schedules them to the one local node
(`scheduling`), maps their volumes to paths on this machine (`volumes`, `layout`), starts each
container as a process group (`starter`, `processes`) or, with the container runtime, as a podman
container of the project's image (`containerrun`, `containers`, `cgroups`), restarts them by their restart policy with
kubelet's crash-loop back-off (`restarts`) and writes their status as kubelet does (`status`,
`podwrites`). `controller.controllers` gives the manager its spec; `paths.log_path` tells `cdi logs`
where a container's output is.

Nothing is imported here, so the CLI can read `paths` without loading the runner.
"""
