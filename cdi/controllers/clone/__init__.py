"""Cloning: the DataVolume clone controllers, the clone populator, its planner and phases.

`strategy` (pure: which strategy and why) and `plans` (pure: which phases, which names) decide;
`facts` observes; `phases` and `populator` apply; `datavolume` turns `spec.source.pvc|snapshot`
into a target claim for the populator; `transfer` (ours) follows a host-assisted copy's bytes for the
DataVolume (rate, ETA, Stalled). The host-assisted copy itself (upload server target, source pod) is
`cdi.controllers.hostclone`.
"""
