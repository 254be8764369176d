"""Great-circle distance and fibre latency.

The project models link latency as configured data: the great-circle distance between the two
ends, times a route factor (fibre routes are longer than the great circle: 1.3-1.6 on
terrestrial backbones), times the one-way propagation delay of light in fibre, about 4.9 us/km
(light in glass travels at roughly 204,000 km/s).
"""

from __future__ import annotations

import math

EARTH_RADIUS_KM = 6371.0088
"""Mean Earth radius (IUGG), km."""

FIBER_MS_PER_KM = 0.0049
"""One-way propagation delay in optical fibre, ms per km."""

DEFAULT_ROUTE_FACTOR = 1.5
"""Fibre route length / great-circle distance used when a file does not say otherwise."""


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance in km between two points given in decimal degrees."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlmb = math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def fiber_latency_ms(distance_km: float, route_factor: float = DEFAULT_ROUTE_FACTOR) -> float:
    """One-way latency in ms of a fibre route ``route_factor`` times longer than ``distance_km``."""
    if not (distance_km >= 0 and math.isfinite(distance_km)):
        raise ValueError(f"distance_km must be finite and >= 0, got {distance_km!r}")
    if not (route_factor >= 1 and math.isfinite(route_factor)):
        raise ValueError(f"route_factor must be finite and >= 1, got {route_factor!r}")
    return distance_km * route_factor * FIBER_MS_PER_KM
