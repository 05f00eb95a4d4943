"""The DataImportCron controller: keep a golden image fresh and a DataSource pointing at it.

Upstream's `dataimportcron-controller` (reference §3.4), in the controller-polled form only: there is
no CronJob and no poller pod; the controller itself polls the source at `storage.import.nextCronTime`
(embedded mode has no CronJob controller, and one code path serves both backends).

    schedule.py   pure: next fire time of a cron schedule (croniter; `@every`), timestamps
    naming.py     pure: import names (`<managedDataSource>-<12 digest chars>`), validator digests
    polling.py    the `SourcePoller` protocol, its `PollTarget` and its errors
    pollers.py    the HTTP(S) and S3 pollers, and the default set
    registry.py   the registry poller (tag → manifest digest, with the importer's registry client)
    targets.py    the template's source, Secret, CA and insecure flag resolved into a `PollTarget`
    observed.py   the frozen `Observed` (and the poll's `PollOutcome`) every pure step reads
    observe.py    reads one cron's world into an `Observed`
    plan.py       pure: `Observed` → `Plan` (cron annotations and status, actions, events)
    actions.py    the plan's vocabulary (create, patch, delete, events) and the cron's resource labels
    render.py     pure: the import DataVolume, the snapshot, the managed DataSource
    collect.py    pure: which old imports garbage collection deletes
    classchange.py pure: re-importing on a new storage class
    status.py     pure: conditions with upstream's reasons
    controller.py the reconciler: observe → poll when due → plan → apply; cleanup on deletion
"""
