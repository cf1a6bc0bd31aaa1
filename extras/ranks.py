"""Where this process stands among torchrun's ranks, the few collective calls the training loop makes, and
every rank's random states for last.pt.

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
        """Rank 0 alone prints, writes files and downloads: N copies of every line and file would help no
        one."""
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


def rng_states(device: torch.device, batch_generator: torch.Generator, ranks: Ranks = Ranks()) -> dict:
    """Every random state the run depends on: batch order (the same on every rank), and dropout on the CPU and
    on the device, which differs per rank: under torchrun, every rank's dropout states are gathered (all ranks
    call this)."""
    own = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        own["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps":
        own["mps"] = torch.mps.get_rng_state()
    states = {"batches": batch_generator.get_state(), **own}
    if ranks.world_size > 1:
        gathered = {}
        for key, state in own.items():  # all CPU byte tensors, even the CUDA generator's
            gathered[key] = [torch.empty_like(state) for _ in range(ranks.world_size)]
            dist.all_gather(gathered[key], state, group=ranks.cpu_group)
        states["ranks"] = [{key: gathered[key][r] for key in own} for r in range(ranks.world_size)]
    return states
