"""The registry zoo: a proxy in front of a real `docker-registry` that behaves like a named one.

- `relay.FaultProxy` forwards to the registry, streamed both ways, and
  injects faults (`rules.FaultRule`), body-size limits and resumable
  sessions (`uploads`), and the quirks of a named registry (`quirks`);
- `stats` counts what it saw (requests by kind, faults, a log);
- `profiles.profile(name)` names real registries (Docker Hub, GHCR, ACR,
  ECR, Quay, Harbor, GAR, a chunked-only one), each citing its sources.
"""

from tests.support.zoo.profiles import PROFILES, Profile, profile
from tests.support.zoo.relay import FaultProxy
from tests.support.zoo.rules import CHAOS_KINDS, FAULT_KINDS, FaultRule
from tests.support.zoo.stats import ProxyRequest, ProxyStats

__all__ = [
    "CHAOS_KINDS",
    "FAULT_KINDS",
    "PROFILES",
    "FaultProxy",
    "FaultRule",
    "Profile",
    "ProxyRequest",
    "ProxyStats",
    "profile",
]
