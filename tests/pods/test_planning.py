"""The runner's pure decisions: scheduling, restarts and back-off, phase and status, pod IPs, adoption."""

from __future__ import annotations

import ipaddress

import pytest

from cdi.embedded.pods.addresses import addresses_in_use, allocate
from cdi.embedded.pods.records import adopt, view
from cdi.embedded.pods.restarts import Backoff, BackoffPolicy, Decision, decide, go_duration
from cdi.embedded.pods.scheduling import ClaimView, SchedulingPlan, plan_scheduling
from cdi.embedded.pods.spec import parse_pod
from cdi.embedded.pods.status import ContainerView, Running, Terminated, Waiting, pod_phase, pod_status

DONE_OK = Terminated(0, "Completed", "", "t0", "t1")
DONE_BAD = Terminated(1, "Error", "boom", "t0", "t1")


@pytest.mark.parametrize(("claims", "plan"), [
    ([], SchedulingPlan(bind=True)),
    ([ClaimView("a", bound=True)], SchedulingPlan(bind=True)),
    ([ClaimView("a", exists=False)],
     SchedulingPlan(message='0/1 nodes are available: persistentvolumeclaim "a" not found.')),
    ([ClaimView("a", bound=True, deleting=True)],
     SchedulingPlan(message='0/1 nodes are available: persistentvolumeclaim "a" is being deleted.')),
    ([ClaimView("a")], SchedulingPlan(
        message="0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims: a.")),
    ([ClaimView("a", wait_for_first_consumer=True), ClaimView("b", bound=True),
      ClaimView("c", wait_for_first_consumer=True, selected_node="pycdi-node")],
     SchedulingPlan(select_node_on=("a",), message="waiting for the volumes of claims a, c to be provisioned "
                                                   "on node pycdi-node")),
])
def test_scheduling_plan(claims: list[ClaimView], plan: SchedulingPlan) -> None:
    assert plan_scheduling(claims) == plan


def test_crash_loop_back_off_doubles_to_the_cap_and_resets_after_a_long_run() -> None:
    policy = BackoffPolicy(base=10, cap=40)
    first = decide("OnFailure", 1, finished=100, entry=None, now=100, backoff=policy)
    assert first == Decision("restart", backoff=Backoff(10, 100))  # the first restart is immediate
    assert decide("OnFailure", 1, finished=105, entry=first.backoff, now=110, backoff=policy) == Decision("wait", 5)
    second = decide("OnFailure", 1, finished=105, entry=first.backoff, now=115, backoff=policy)
    assert second.backoff == Backoff(20, 105)
    delays = [second.backoff.delay]
    entry: Backoff | None = second.backoff
    for finished in (130, 160, 210):
        entry = decide("Always", 0, finished=finished, entry=entry, now=finished + 100, backoff=policy).backoff
        assert entry is not None
        delays.append(entry.delay)
    assert delays == [20, 40, 40, 40]
    fresh = decide("Always", 1, finished=210 + 81, entry=entry, now=210 + 81, backoff=policy)
    assert fresh == Decision("restart", backoff=Backoff(10, 291))  # ran more than 2 * cap: forgiven


@pytest.mark.parametrize(("policy", "code", "action"), [
    ("Never", 1, "stay"), ("Never", 0, "stay"), ("OnFailure", 0, "stay"), ("OnFailure", 2, "restart"),
    ("Always", 0, "restart"),
])
def test_restart_policy(policy: str, code: int, action: str) -> None:
    assert decide(policy, code, 0, None, 0, BackoffPolicy()).action == action


@pytest.mark.parametrize(("seconds", "text"), [(0.2, "200ms"), (10, "10s"), (80, "1m20s"), (300, "5m0s"),
                                               (3700, "1h1m40s")])
def test_back_off_is_printed_as_go_durations(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def c(state: Waiting | Running | Terminated, last: Terminated | None = None) -> ContainerView:
    return ContainerView("c", "img", state, last)


@pytest.mark.parametrize(("policy", "containers", "phase"), [
    ("Never", [c(Waiting("ContainerCreating"))], "Pending"),
    ("Never", [c(Running("t")), c(Waiting("ContainerCreating"))], "Pending"),
    ("Never", [c(Running("t")), c(DONE_OK)], "Running"),
    ("Never", [c(DONE_OK), c(DONE_OK)], "Succeeded"),
    ("Never", [c(DONE_OK), c(DONE_BAD)], "Failed"),
    ("OnFailure", [c(DONE_OK)], "Succeeded"),
    ("OnFailure", [c(Waiting("CrashLoopBackOff"), last=DONE_BAD)], "Running"),
    ("Always", [c(DONE_OK)], "Running"),
])
def test_phase_follows_kubelet(policy: str, containers: list[ContainerView], phase: str) -> None:
    assert pod_phase(policy, containers) == phase


def test_terminal_phases_stick_and_deleted_pods_end_terminal() -> None:
    assert pod_phase("Always", [c(Running("t"))], previous="Succeeded") == "Succeeded"
    assert pod_phase("Always", [c(Terminated(143, "Error", "", "a", "b"))], terminating=True) == "Failed"
    assert pod_phase("Always", [c(DONE_OK)], terminating=True) == "Succeeded"


def test_status_keeps_transition_times_while_conditions_hold() -> None:
    scheduled = {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": "t0"}
    first = pod_status({"conditions": [scheduled]}, "Running", [c(Running("t1"))], pod_ip="127.1.0.5",
                       start_time="t1", now="t1")
    again = pod_status(first, "Running", [c(Running("t1"))], pod_ip="127.1.0.5", start_time="t1", now="t9")
    assert again == first
    assert [(x["type"], x["status"], x["lastTransitionTime"]) for x in first["conditions"]] == [
        ("Initialized", "True", "t1"), ("Ready", "True", "t1"), ("ContainersReady", "True", "t1"),
        ("PodScheduled", "True", "t0")]
    done = pod_status(first, "Succeeded", [c(DONE_OK)], pod_ip="127.1.0.5", start_time="t1", now="t5")
    ready = next(x for x in done["conditions"] if x["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["lastTransitionTime"]) == ("False", "PodCompleted", "t5")
    assert done["containerStatuses"][0]["state"] == {"terminated": {
        "exitCode": 0, "reason": "Completed", "startedAt": "t0", "finishedAt": "t1"}}


def test_pod_ips_are_unique_loopback_addresses() -> None:
    network = ipaddress.ip_network("127.1.0.0/16")
    taken: set[str] = set()
    for index in range(300):
        ip = allocate(f"uid-{index % 7}", taken)  # the same uid twice must still get a new address
        assert ipaddress.ip_address(ip) in network
        assert not ip.endswith((".0", ".255"))
        taken.add(ip)
    assert len(taken) == 300
    pods = [{"metadata": {"uid": "a"}, "status": {"podIP": "127.1.0.1", "phase": "Running"}},
            {"metadata": {"uid": "b"}, "status": {"podIP": "127.1.0.2", "phase": "Succeeded"}},
            {"metadata": {"uid": "c"}, "status": {"podIP": "127.1.0.3", "phase": "Pending"}}]
    assert addresses_in_use(pods, except_uid="c") == {"127.1.0.1"}  # finished pods release theirs


def test_adopting_a_running_container_takes_it_as_killed_by_the_restart() -> None:
    pod = parse_pod({"metadata": {"name": "p", "namespace": "ns", "uid": "u"},
                     "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}})
    status = {"containerStatuses": [
        {"name": "a", "restartCount": 2, "state": {"running": {"startedAt": "t3"}}, "containerID": "pycdi://9",
         "lastState": {"terminated": DONE_BAD.to_dict()}},
        {"name": "b", "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": DONE_BAD.to_dict()}},
    ]}
    record = adopt(pod, status, now="t9", monotonic=50.0)
    # No run of any of them was found: leftovers are killed before each runs again, also of b and c,
    # which a runner may have started just before it died, before it wrote their status
    assert record.lost == {"a", "b", "c"}
    a, b, fresh = (record.containers[name] for name in "abc")
    assert a.exited == Terminated(137, "Error", "the pod runner restarted", "t3", "t9", "pycdi://9", signal=9)
    assert (a.last, a.restart_count) == (DONE_BAD, 2)
    assert (b.exited, b.last, b.restart_count) == (DONE_BAD, None, 1)
    assert fresh.exited is None
    restart_now = Decision("restart", backoff=Backoff(10, 50))
    assert view(pod, pod.containers[0], a, restart_now).state == Waiting(
        "CrashLoopBackOff", "back-off 0s restarting failed container=a pod=p_ns(u)")
    assert view(pod, pod.containers[2], fresh, None).state == Waiting("ContainerCreating")
