"""Running one storage node's daemons in-process against the test cluster."""

from __future__ import annotations

import dataclasses

from soko.object.daemons.runner import NodeContext


def node_context(cluster, node: int, **settings) -> NodeContext:
    """What ``soko serve object-daemons --node N`` builds for node ``node`` of ``cluster``."""
    sections = dict(cluster.config.sections)
    sections["storage"] = sections["storage"].for_node(node)
    sections["object-daemons"] = dataclasses.replace(
        sections["object-daemons"].for_node(node), **settings)
    return NodeContext(dataclasses.replace(cluster.config, sections=sections))


def ring(cluster, kind: str):
    """The cluster's ``kind`` ring, salted as its proxy and nodes salt it."""
    from soko.object.shared.rings import load_rings

    return load_rings(cluster.config)[kind]


def run_pass(cluster, daemon_class, *nodes: int, **settings) -> list[dict]:
    """One ``run_once()`` of ``daemon_class`` on each of ``nodes`` (all three by default)."""
    return [daemon_class(node_context(cluster, n, **settings)).run_once()
            for n in (nodes or range(3))]
