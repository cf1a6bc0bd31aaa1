"""Where this process stands among torchrun's ranks, and the few collective calls the training loop makes.

Started with plain `python` there is one rank, and every function here returns at once: the code that starts
and joins a torchrun process group is extras/distributed.py, imported only under torchrun.
"""

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Ranks:
    """Where this process stands in a torchrun launch; rank 0 of 1 when started with plain `python`."""

    rank: int = 0
    local_rank: int = 0  # which GPU of this machine is ours
    world_size: int = 1
    launched: bool = False  # started by torchrun, in a process group (even a group of one)
    # a gloo group for host-side agreements when the main group is nccl; None: the main one
    cpu_group: object = None

    @property
    def is_main(self) -> bool:
        """Rank 0 alone prints, writes files and downloads: N copies of every line and file would help no one."""
        return self.rank == 0


def agree(values: list[float], ranks: Ranks, op: str = "max") -> list[float]:
    """Every rank's values combined elementwise ("max" or "sum"), in one host-side all-reduce, so all ranks
    take the same decisions (a no-op outside torchrun)."""
    if not ranks.launched:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)  # float64: exact for counts up to 2**53
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM, group=ranks.cpu_group)
    return t.tolist()


def wait_for_all(ranks: Ranks) -> None:
    """Return once every rank has got here (a no-op outside torchrun)."""
    if ranks.launched:
        dist.barrier(group=ranks.cpu_group)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a device tensor over every rank, in place (a no-op in one process)."""
    if dist.is_initialized():
        dist.all_reduce(t)
    return t
