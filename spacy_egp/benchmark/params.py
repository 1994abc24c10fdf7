"""EGP against GP head parameters, counted on built heads (not the closed forms)."""

from typing import Dict, List

from thinc.api import Model

from ..ml.heads import build_egp_head, build_gp_head
from .evaluation import parameter_count


def head_parameters(width: int = 768, head_size: int = 64, label_counts: List[int] = (3, 10, 100)) -> List[Dict[str, int]]:
    """One row per label count: the parameters of an initialized EGP and GP head."""
    rows = []
    for n_labels in label_counts:
        counts = {}
        for name, build in (("egp", build_egp_head), ("gp", build_gp_head)):
            head: Model = build(head_size, True, None, n_labels)
            head.set_dim("nI", width)
            head.initialize()
            counts[name] = parameter_count(head)
        rows.append({"width": width, "head_size": head_size, "labels": n_labels, **counts})
    return rows
