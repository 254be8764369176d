"""Where the data shipped with the project lives, and topologies by name.

Everything sits under the repository's ``topologies/`` folder:

- ``topologies/*.yaml``: the topology files (``national``, ``triangle``, ``diamond``, ``ring``);
- ``topologies/zoo/*.gml``: 15 carrier maps of the Internet Topology Zoo (CC BY 4.0, see the
  README beside them);
- ``topologies/data/east-data-west/sites.csv``: the site list ``topologies/gen_national.py``
  builds the national backbone from.

A topology argument on the command line (``cpn-lab``, ``cpn-controller``, ``cpn-topo``,
``cpn-demo``) is a file or ``zoo:NAME``: :func:`load_topology_argument` reads either, the second
through the Zoo import of :mod:`controller.topology.zoo`, so a carrier map needs no converting
first. Tests, benchmarks and tools find the data through this module only.
"""

from __future__ import annotations

from pathlib import Path

from controller.errors import TopologyError
from controller.topology.loader import load_topology
from controller.topology.model import Topology

__all__ = ["ZOO_PREFIX", "load_topology_argument", "sites_csv", "topologies_dir",
           "topology_file", "topology_names", "zoo_dir", "zoo_file", "zoo_names"]

ZOO_PREFIX = "zoo:"
"""A topology argument starting with this names a shipped Topology Zoo map (``zoo:Abilene``)."""

_TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"


def topologies_dir() -> Path:
    """The repository's ``topologies/`` folder."""
    return _TOPOLOGIES


def zoo_dir() -> Path:
    """The folder of the shipped Topology Zoo GML files."""
    return _TOPOLOGIES / "zoo"


def sites_csv() -> Path:
    """The East-Data-West site list the national backbone is generated from."""
    return _TOPOLOGIES / "data" / "east-data-west" / "sites.csv"


def zoo_names() -> list[str]:
    """Names of the shipped Zoo maps (file stems, e.g. ``Abilene``), sorted."""
    return sorted(p.stem for p in zoo_dir().glob("*.gml"))


def topology_names() -> list[str]:
    """Names of the shipped topology files (stems of ``topologies/*.yaml``), sorted."""
    return sorted(p.stem for p in _TOPOLOGIES.glob("*.yaml"))


def _pick(name: str, names: list[str], what: str, source: str) -> str:
    """``name`` among ``names``, matched exactly or else ignoring case; raises TopologyError."""
    if name in names:
        return name
    folded = [n for n in names if n.lower() == name.lower()]
    if len(folded) == 1:
        return folded[0]
    raise TopologyError(f"no {what} named {name!r}; available: {', '.join(names) or 'none'}",
                        source=source)


def zoo_file(name: str) -> Path:
    """The GML file of the Zoo map ``name`` (``Kdl``, case ignored when unambiguous).

    Raises :class:`TopologyError` listing the available names for an unknown one."""
    return zoo_dir() / f"{_pick(name, zoo_names(), 'Topology Zoo map', ZOO_PREFIX + name)}.gml"


def topology_file(name: str) -> Path:
    """The shipped topology file ``name`` (``national`` -> ``topologies/national.yaml``).

    Raises :class:`TopologyError` listing the available names for an unknown one."""
    return _TOPOLOGIES / f"{_pick(name, topology_names(), 'shipped topology', name)}.yaml"


def load_topology_argument(argument: str | Path) -> Topology:
    """The topology a command-line argument names: ``zoo:NAME`` (a shipped Zoo map, imported
    with :func:`controller.topology.zoo.import_gml`) or the path of a topology file (YAML).

    Raises :class:`TopologyError` (an unknown Zoo name lists the available ones)."""
    text = str(argument)
    if text.startswith(ZOO_PREFIX):
        from controller.topology.zoo import import_gml  # networkx only when a map is asked for

        return import_gml(zoo_file(text[len(ZOO_PREFIX):]))
    return load_topology(argument)
