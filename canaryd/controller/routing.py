"""The router factory: one :class:`~canaryd.core.ports.TrafficRouter` per router kind
(``spec.router``), and :class:`RouterByKind`, which sends each Rollout to the router its spec
names. An unknown kind is a loud error, at assembly and per Rollout, never a silent fallback
to another API."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from canaryd.adapters.cache import Cache
from canaryd.adapters.gateway import GatewayRouter
from canaryd.adapters.istio import IstioRouter
from canaryd.adapters.transport import KubeApi
from canaryd.api.models import Rollout, RouterKind
from canaryd.core.ports import ByMode, PermanentError, TrafficRouter


def make_router(
    kind: RouterKind | str,
    api: KubeApi,
    *,
    field_manager: str = "canaryd",
    cache: Cache | None = None,
) -> TrafficRouter:
    """The router of ``kind`` over ``api`` (reading ``cache`` when given); ValueError naming
    the known kinds otherwise."""
    try:
        known = RouterKind(kind)
    except ValueError:
        choices = ", ".join(k.value for k in RouterKind)
        raise ValueError(f"unknown traffic router {kind!r} (known: {choices})") from None
    if known == RouterKind.ISTIO:
        return IstioRouter(api, field_manager=field_manager, cache=cache)
    return GatewayRouter(api, field_manager=field_manager, cache=cache)


class RouterByKind(ByMode):
    """A TrafficRouter that delegates each call to the router of the Rollout's
    ``spec.router`` (see :attr:`canaryd.api.models.RolloutSpec.router_kind`)."""

    def __init__(self, routers: Mapping[RouterKind, TrafficRouter]) -> None:
        self.routers = dict(routers)

    @classmethod
    def build(
        cls,
        api: KubeApi,
        kinds: Iterable[RouterKind | str] = tuple(RouterKind),
        *,
        cache: Cache | None = None,
    ) -> RouterByKind:
        return cls({RouterKind(k): make_router(k, api, cache=cache) for k in kinds})

    def mode(self, rollout: Rollout) -> TrafficRouter:
        return self.of(rollout)

    def of(self, rollout: Rollout) -> TrafficRouter:
        kind = rollout.spec.router_kind
        router = self.routers.get(kind)
        if router is None:
            raise PermanentError(
                f"Rollout {rollout.metadata.namespace}/{rollout.metadata.name}: spec.router "
                f"{kind.value!r} is not enabled in this controller"
            )
        return router
