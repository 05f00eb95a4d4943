"""The rotation plans as tables: what renews when (CAs, the proxy's client certificate, leaves, token keys),
and what the trust bundle holds, with certificates made at fixed times (no clock is read)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cdi.controllers.upload.credentials import CaKeys
from cdi.controllers.upload.rotation import (
    CaCerts,
    CertPolicies,
    CertPolicy,
    CreateCa,
    CreateRing,
    DropPreviousCa,
    ForgetKeys,
    PromoteCa,
    PromoteKey,
    RingTimes,
    Schedule,
    StageCa,
    StageKey,
    leaf_due,
    plan_ca,
    plan_client,
    plan_ring,
    policies_from,
    ring_wake,
)
from cdi.pki import KeyPair, issue, new_ca, split_bundle

T0 = datetime(2026, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)
CA = CertPolicy(48 * H, 24 * H)
LEAF = CertPolicy(24 * H, 12 * H)
PROPAGATION = timedelta(seconds=180)

OLD = new_ca("old", T0, lifetime=CA.duration)  # expires T0+48h; due from T0+24h
NEW = new_ca("new", T0 + 25 * H, lifetime=CA.duration)
STRANGER = new_ca("stranger", T0, lifetime=CA.duration)


def leaf(ca: KeyPair, at: datetime, *, client: bool = True, life: timedelta = LEAF.duration) -> bytes:
    return issue(ca, "leaf", at, client=client, lifetime=life).cert_pem


@pytest.mark.parametrize(("ca", "leaves", "now", "expected"), [
    pytest.param(None, (), T0, (CreateCa(),), id="no CA: make one"),
    pytest.param(CaCerts(OLD.cert_pem), (), T0 + 23 * H, (), id="young signer: nothing"),
    pytest.param(CaCerts(OLD.cert_pem), (), T0 + 24 * H + timedelta(seconds=1), (StageCa(),),
                 id="within renewBefore: stage the next CA"),
    pytest.param(CaCerts(new_ca("long", T0).cert_pem), (), T0 + H, (StageCa(),),
                 id="made for longer than certConfig's duration (ten years): replaced"),
    pytest.param(CaCerts(OLD.cert_pem, NEW.cert_pem), (), T0 + 25 * H + timedelta(seconds=179), (),
                 id="staged, not yet propagated: keep signing with the old"),
    pytest.param(CaCerts(OLD.cert_pem, NEW.cert_pem), (), T0 + 25 * H + timedelta(seconds=180), (PromoteCa(),),
                 id="staged and propagated: promote"),
    pytest.param(CaCerts(OLD.cert_pem, new_ca("n", T0 + 48 * H).cert_pem), (), T0 + 48 * H + timedelta(seconds=1),
                 (PromoteCa(),), id="signer expired: promote at once"),
    pytest.param(CaCerts(NEW.cert_pem, None, OLD.cert_pem), (leaf(OLD, T0 + 20 * H),), T0 + 26 * H, (),
                 id="previous still signs a live leaf: kept"),
    pytest.param(CaCerts(NEW.cert_pem, None, OLD.cert_pem), (leaf(NEW, T0 + 26 * H),), T0 + 26 * H,
                 (DropPreviousCa(),), id="previous signs nothing in use: dropped"),
    pytest.param(CaCerts(NEW.cert_pem, None, OLD.cert_pem), (leaf(OLD, T0 + 20 * H, life=H),), T0 + 26 * H,
                 (DropPreviousCa(),), id="previous's only leaf expired: dropped"),
    pytest.param(CaCerts(NEW.cert_pem, None, OLD.cert_pem), (leaf(OLD, T0 + 40 * H),), T0 + 48 * H + timedelta(minutes=1),
                 (DropPreviousCa(),), id="previous expired: dropped whatever it signed"),
])
def test_ca_plan(ca: CaCerts | None, leaves: tuple[bytes, ...], now: datetime, expected: tuple[object, ...]) -> None:
    assert plan_ca(ca, leaves, now, CA, PROPAGATION) == expected


def test_bundle_holds_staged_signer_and_previous_in_that_order() -> None:
    staged = CaKeys(OLD, NEW)
    assert split_bundle(staged.bundle()) == [NEW.cert_pem, OLD.cert_pem]
    promoted = CaKeys(NEW, None, OLD)
    assert split_bundle(promoted.bundle()) == [NEW.cert_pem, OLD.cert_pem]
    assert split_bundle(CaKeys(NEW).bundle()) == [NEW.cert_pem]
    assert CaKeys.from_data({k: v if isinstance(v, bytes) else v.encode()
                             for k, v in promoted.data().items()}) == promoted


NOW = T0 + 26 * H  # NEW signs, OLD is previous
ROTATED = CaCerts(NEW.cert_pem, None, OLD.cert_pem)


@pytest.mark.parametrize(("cert", "servers", "now", "reason", "issuer"), [
    pytest.param(None, (), NOW, "Missing", NEW, id="missing: under the signer"),
    pytest.param(leaf(NEW, NOW - H), (), NOW, None, NEW, id="fresh under the signer: kept"),
    pytest.param(leaf(NEW, NOW - 13 * H), (), NOW, "Expiring", NEW, id="within renewBefore: renewed"),
    pytest.param(leaf(OLD, NOW - H), ((NEW.cert_pem, OLD.cert_pem),), NOW, "NewSigner", NEW,
                 id="under the previous CA, every server trusts the signer: moves"),
    pytest.param(leaf(OLD, NOW - H), ((OLD.cert_pem,), (NEW.cert_pem, OLD.cert_pem)), NOW, None, OLD,
                 id="a server started before the rotation trusts only the previous CA: stays"),
    pytest.param(leaf(OLD, NOW - 13 * H), ((OLD.cert_pem,),), NOW, "Expiring", OLD,
                 id="due while that server runs: renewed under the previous CA"),
    pytest.param(leaf(OLD, T0 + 40 * H - 13 * H), ((OLD.cert_pem,),), T0 + 40 * H, "Expiring", NEW,
                 id="previous CA ending within renewBefore: nothing left to stay with"),
    pytest.param(leaf(STRANGER, NOW - H), (), NOW, "UntrustedIssuer", NEW, id="signed by a CA no one trusts"),
])
def test_client_plan(cert: bytes | None, servers: tuple[tuple[bytes, ...], ...], now: datetime, reason: str | None,
                     issuer: KeyPair) -> None:
    plan = plan_client(cert, ROTATED, servers, now, LEAF)
    assert (plan.reason, plan.issuer) == (reason, issuer.cert_pem)


@pytest.mark.parametrize(("cert", "now", "reason"), [
    (None, NOW, "Missing"),
    (leaf(NEW, NOW - H, client=False), NOW, None),
    (leaf(OLD, NOW - H, client=False), NOW, None),  # the previous CA is still trusted
    (leaf(NEW, NOW - 12 * H, client=False), NOW, "Expiring"),
    (leaf(STRANGER, NOW - H, client=False), NOW, "UntrustedIssuer"),
    (leaf(NEW, NOW - H, client=False, life=23 * H), NOW, None),  # shorter than the duration: fine
    (leaf(NEW, NOW - H, client=False, life=25 * H), NOW, "Lifetime"),  # longer: made under another certConfig
])
def test_leaf_due(cert: bytes | None, now: datetime, reason: str | None) -> None:
    assert leaf_due(cert, now, LEAF, ROTATED.bundle()) == reason


def test_a_leaf_never_outlives_its_ca() -> None:
    short = issue(OLD, "late", T0 + 40 * H, lifetime=24 * H)
    assert short.expires() == OLD.expires()


DAY = 86400.0
S = Schedule(refresh=60, propagation=180, token_interval=DAY, token_lifetime=310)


@pytest.mark.parametrize(("ring", "now", "expected"), [
    pytest.param(None, 0.0, (CreateRing(),), id="no ring: make one"),
    pytest.param(RingTimes(0.0), 1000.0, (), id="young key: nothing"),
    pytest.param(RingTimes(0.0), DAY - 180, (StageKey(),), id="propagation before the interval: stage"),
    pytest.param(RingTimes(0.0, DAY - 180), DAY - 1, (), id="staged, not yet propagated: current still signs"),
    pytest.param(RingTimes(0.0, DAY - 180), DAY, (PromoteKey(retain=1),), id="propagated: promote, keep the old"),
    pytest.param(RingTimes(0.0, DAY - 180, (DAY - 100,)), DAY, (PromoteKey(retain=2),),
                 id="a key retired 100 s ago still verifies tokens: kept too"),
    pytest.param(RingTimes(0.0, DAY - 180, (DAY - 400,)), DAY, (PromoteKey(retain=1),),
                 id="a key retired past a token lifetime: let go at promotion"),
    pytest.param(RingTimes(0.0, None, (300.0, 0.0)), 320.0, (ForgetKeys(keep=1),),
                 id="retired past a token lifetime: forgotten"),
    pytest.param(RingTimes(0.0, None, (300.0,)), 609.0, (), id="retired 309 s ago: a token may still be valid"),
])
def test_ring_plan(ring: RingTimes | None, now: float, expected: tuple[object, ...]) -> None:
    assert plan_ring(ring, now, S) == expected


def test_ring_wakes_for_the_first_due_step() -> None:
    assert ring_wake(RingTimes(0.0), 1000.0, S) == DAY - 180 - 1000
    assert ring_wake(RingTimes(0.0, DAY - 180), DAY - 100, S) == 100
    assert ring_wake(RingTimes(0.0, None, (900.0,)), 1000.0, S) == 210


@pytest.mark.parametrize(("config", "expected", "problems"), [
    (None, CertPolicies(), 0),
    ({"ca": {"duration": "2h", "renewBefore": "30m"}},
     CertPolicies(ca=CertPolicy(2 * H, timedelta(minutes=30))), 0),
    ({"server": {"duration": "30s"}}, CertPolicies(server=CertPolicy(timedelta(seconds=30), timedelta(seconds=15))),
     0),
    ({"client": {"renewBefore": "1h"}}, CertPolicies(client=CertPolicy(24 * H, H)), 0),
    ({"server": {"duration": "1 day"}}, CertPolicies(), 1),
    ({"client": {"duration": "1h", "renewBefore": "2h"}}, CertPolicies(), 1),
])
def test_cert_config_as_policies(config: dict[str, dict[str, str]] | None, expected: CertPolicies,
                                 problems: int) -> None:
    policies, found = policies_from(config)
    assert (policies, len(found)) == (expected, problems)


def test_schedule_from_the_environment() -> None:
    assert Schedule.from_environ({}) == Schedule()
    fast = Schedule.from_environ({"CDI_CREDENTIAL_REFRESH_INTERVAL": "0.5", "CDI_TOKEN_KEY_ROTATION_INTERVAL": "20"})
    assert (fast.refresh, fast.propagation, fast.token_interval) == (0.5, 1.5, 20.0)


def test_the_secret_and_config_map_names_are_the_installs() -> None:
    from cdi.controllers.upload import credentials as creds
    from cdi.install import tls

    assert (creds.CA_SECRET, creds.CLIENT_SECRET, creds.BUNDLE_CONFIG_MAP, creds.BUNDLE_KEY) == (
        tls.UPLOADSERVER_CA_SECRET, tls.UPLOADSERVER_CLIENT_SECRET, tls.UPLOADSERVER_CA_BUNDLE, tls.BUNDLE_KEY)
