"""When the upload path's certificates and token keys are renewed: pure plans over an observed snapshot.

Called by `cdi.controllers.upload.rotator` (which observes the Secrets and applies the plans) and by the
upload proxy host `cdi.cli.proxyhost` (for its own serving certificate). Nothing here reads a cluster, a
file or the clock: `now` is passed in, so the tables in tests/upload/test_rotation_plan.py pin every rule.

Lifetimes are upstream's `CDI.spec.certConfig` (`ca`, `server`, `client`, each `duration`/`renewBefore`, Go
durations), defaulting as upstream: CAs 48h renewed 24h before the end, servers and clients 24h/12h.

**The upload-server CA** (it signs every upload server's certificate and the proxy's client certificate)
rotates in two steps, so no peer ever meets a certificate from a CA it does not trust yet:

1. *Stage*: within `renewBefore` of the signer's end a new CA is made and published in the trust bundle
   (`ca-bundle.crt`) beside the signer; nothing is signed with it yet.
2. *Promote*: once the bundle has been out for `propagation` seconds (every reader has re-read it), the new
   CA signs; the old one is kept, key included, as `previous`.

The previous CA stays in the bundle while a leaf it signed is still in use and unexpired — as upstream's
bundles keep "all still-valid CAs" — and is dropped after. The proxy's client certificate moves to the new
CA only when every live upload server trusts it (its Secret was made holding it): an upload server reads
its trust once, so one started before the rotation keeps accepting the client certificate it knows until
its upload ends (renewed under the previous CA if it falls due meanwhile).

**Token keys** rotate the same way: a new key is staged (its public key published to verifiers) at
`interval - propagation`, and signs from `propagation` later; each retired key keeps verifying for a token
lifetime plus leeway after it stopped signing, so every token it signed verifies until it expires.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from cdi.goduration import parse as go_duration
from cdi.pki import expiry, made, signed_by
from cdi.tokens import DEFAULT_LIFETIME, DEFAULT_ROTATION_INTERVAL, LEEWAY

# Environment of the processes that read rotating credentials (`cdi serve`, `cdi controller`,
# `cdi uploadproxy --kubeconfig`), in seconds. Upstream has no such knobs: its operator syncs every minute
# and never rotates token keys.
REFRESH_ENV: Final = "CDI_CREDENTIAL_REFRESH_INTERVAL"
PROPAGATION_ENV: Final = "CDI_CREDENTIAL_PROPAGATION"
TOKEN_ROTATION_ENV: Final = "CDI_TOKEN_KEY_ROTATION_INTERVAL"

_SLACK = timedelta(seconds=2)  # certificate times are whole seconds


@dataclass(frozen=True)
class CertPolicy:
    duration: timedelta
    renew_before: timedelta

    def due(self, cert_pem: bytes, now: datetime) -> bool:
        """Within `renew_before` of its end, or issued for longer than `duration` (the certConfig was
        shortened, or the certificate predates it): upstream re-issues on a config change too."""
        ends = expiry(cert_pem)
        return ends - now <= self.renew_before or ends - made(cert_pem) > self.duration + _SLACK


@dataclass(frozen=True)
class CertPolicies:
    ca: CertPolicy = CertPolicy(timedelta(hours=48), timedelta(hours=24))
    server: CertPolicy = CertPolicy(timedelta(hours=24), timedelta(hours=12))
    client: CertPolicy = CertPolicy(timedelta(hours=24), timedelta(hours=12))


def policies_from(cert_config: Mapping[str, Any] | None) -> tuple[CertPolicies, list[str]]:
    """The CDI resource's `spec.certConfig` as policies, and what could not be used (the default stays)."""
    defaults, chosen, problems = CertPolicies(), {}, []
    for kind in ("ca", "server", "client"):
        entry = (cert_config or {}).get(kind) or {}
        default: CertPolicy = getattr(defaults, kind)
        try:
            duration = go_duration(entry["duration"]) if entry.get("duration") else default.duration
            before = go_duration(entry["renewBefore"]) if entry.get("renewBefore") else None
        except ValueError as e:
            problems.append(f"certConfig.{kind}: {e}")
            continue
        before = before if before is not None else (default.renew_before if not entry.get("duration") else duration / 2)
        if before >= duration:
            problems.append(f"certConfig.{kind}: renewBefore {entry.get('renewBefore')} is not shorter than the "
                            f"duration {entry.get('duration') or default.duration}")
            continue
        chosen[kind] = CertPolicy(duration, before)
    return CertPolicies(**chosen), problems


@dataclass(frozen=True)
class Schedule:
    """How often readers re-read (`refresh`), how long a new CA or key is published before use
    (`propagation`), how often token keys rotate, and how long a retired key must still verify."""

    refresh: float = 60.0
    propagation: float = 180.0
    token_interval: float = DEFAULT_ROTATION_INTERVAL
    token_lifetime: float = DEFAULT_LIFETIME + LEEWAY

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Schedule:
        """Defaults, overridden by the environment; `propagation` defaults to three refreshes."""
        def number(name: str, default: float) -> float:
            value = environ.get(name)
            return float(value) if value else default

        refresh = number(REFRESH_ENV, cls.refresh)
        return cls(refresh, number(PROPAGATION_ENV, max(3 * refresh, 1.0) if environ.get(REFRESH_ENV)
                                   else cls.propagation), number(TOKEN_ROTATION_ENV, cls.token_interval))


# --- the upload-server CA -------------------------------------------------------------------------------

@dataclass(frozen=True)
class CaCerts:
    """The CA Secret's certificates (keys are the applier's business)."""

    signer: bytes
    pending: bytes | None = None
    previous: bytes | None = None

    def bundle(self) -> tuple[bytes, ...]:
        """What peers trust: the staged CA, the signer, the previous one."""
        return tuple(c for c in (self.pending, self.signer, self.previous) if c is not None)


@dataclass(frozen=True)
class CreateCa:
    """No CA yet: make the first, which signs at once (nothing can have trusted another)."""


@dataclass(frozen=True)
class StageCa:
    """Make the next CA and publish it in the bundle; the signer still signs."""


@dataclass(frozen=True)
class PromoteCa:
    """The staged CA signs from now on; the signer becomes `previous` (an older previous is forgotten)."""


@dataclass(frozen=True)
class DropPreviousCa:
    """The previous CA has expired or signs nothing still in use: take it out of the bundle."""


CaAction = CreateCa | StageCa | PromoteCa | DropPreviousCa


def plan_ca(ca: CaCerts | None, leaves: tuple[bytes, ...], now: datetime, policy: CertPolicy,
            propagation: timedelta) -> tuple[CaAction, ...]:
    """`leaves`: every certificate signed by one of these CAs that is still in use (the proxy's client
    certificate, live upload servers')."""
    if ca is None:
        return (CreateCa(),)
    actions: list[CaAction] = []
    if ca.previous is not None and not _needed(ca.previous, leaves, now):
        actions.append(DropPreviousCa())
    if ca.pending is None:
        if policy.due(ca.signer, now):
            actions.append(StageCa())
    elif now >= made(ca.pending) + propagation or expiry(ca.signer) <= now:
        actions.append(PromoteCa())
    return tuple(actions)


def _needed(ca_pem: bytes, leaves: tuple[bytes, ...], now: datetime) -> bool:
    return expiry(ca_pem) > now and any(signed_by(leaf, ca_pem) and expiry(leaf) > now for leaf in leaves)


# --- leaves -----------------------------------------------------------------------------------------------

def leaf_due(cert: bytes | None, now: datetime, policy: CertPolicy, trusted: tuple[bytes, ...]) -> str | None:
    """Why a leaf must be issued again — "Missing", "Expiring", "Lifetime" (made for longer than the
    certConfig's duration), "UntrustedIssuer" — or None."""
    if cert is None:
        return "Missing"
    if expiry(cert) - now <= policy.renew_before:
        return "Expiring"
    if policy.due(cert, now):
        return "Lifetime"
    if not any(signed_by(cert, ca) for ca in trusted):
        return "UntrustedIssuer"
    return None


@dataclass(frozen=True)
class ClientPlan:
    reason: str | None  # None: keep the client certificate
    issuer: bytes  # which CA signs the new one


def plan_client(cert: bytes | None, ca: CaCerts, servers_trust: tuple[tuple[bytes, ...], ...], now: datetime,
                policy: CertPolicy) -> ClientPlan:
    """The proxy's client certificate: under the signer once every live upload server (`servers_trust`: the
    CAs each one was started trusting) trusts it; until then under the CA they all trust."""
    everyone = all(ca.signer in trust for trust in servers_trust)
    issuer = ca.signer
    # Stay with the previous CA for servers that know only it, unless it ends too soon to issue under.
    if not everyone and ca.previous is not None and expiry(ca.previous) - now > policy.renew_before:
        issuer = ca.previous
    reason = leaf_due(cert, now, policy, ca.bundle())
    if reason is None and cert is not None and issuer == ca.signer and not signed_by(cert, ca.signer):
        reason = "NewSigner"
    return ClientPlan(reason, issuer)


# --- token keys ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RingTimes:
    """When the ring's keys were made (epoch seconds): the current one, a staged one, and when each
    previous key (newest first) stopped signing."""

    current: float
    pending: float | None = None
    retired: tuple[float, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class CreateRing:
    pass


@dataclass(frozen=True)
class StageKey:
    pass


@dataclass(frozen=True)
class PromoteKey:
    retain: int  # previous keys kept, counting the one that stops signing now


@dataclass(frozen=True)
class ForgetKeys:
    keep: int  # previous keys kept; older ones verify nothing that has not expired


RingAction = CreateRing | StageKey | PromoteKey | ForgetKeys


def plan_ring(ring: RingTimes | None, now: float, schedule: Schedule) -> tuple[RingAction, ...]:
    if ring is None:
        return (CreateRing(),)
    live = sum(1 for retired in ring.retired if retired + schedule.token_lifetime > now)
    if ring.pending is not None and now >= ring.pending + schedule.propagation:
        return (PromoteKey(retain=live + 1),)
    actions: list[RingAction] = []
    if live < len(ring.retired):
        actions.append(ForgetKeys(keep=live))
    if ring.pending is None and now >= ring.current + schedule.token_interval - schedule.propagation:
        actions.append(StageKey())
    return tuple(actions)


def ring_wake(ring: RingTimes, now: float, schedule: Schedule) -> float:
    """Seconds until `plan_ring` has something to do."""
    times = [ring.current + schedule.token_interval - schedule.propagation] if ring.pending is None \
        else [ring.pending + schedule.propagation]
    times += [retired + schedule.token_lifetime for retired in ring.retired]
    return max(0.0, min(times) - now)


def cert_wake(certs: tuple[bytes, ...], now: datetime, policy: CertPolicy) -> float:
    """Seconds until the first of `certs` falls within `policy`'s renewal window."""
    if not certs:
        return float("inf")
    return max(0.0, min((expiry(c) - policy.renew_before - now).total_seconds() for c in certs))
