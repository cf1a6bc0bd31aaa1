"""Where this process stands among torchrun's ranks, and what the ranks do together: agree on a few numbers,
sum the training loss, average gradients (and gather their random states for last.pt).

Started with plain `python` there is one rank, a Ranks, and each of those does nothing. Under torchrun each
process is a RankGroup (extras/distributed.py, imported only then), whose methods talk to the other ranks.
"""

from contextlib import nullcontext
from dataclasses import dataclass

import torch


@dataclass
class Ranks:
    """Where this process stands in a torchrun launch; rank 0 of 1 when started with plain `python`."""

    rank: int = 0
    local_rank: int = 0  # which GPU of this machine is ours
    world_size: int = 1
    launched: bool = False  # started by torchrun, in a process group (even a group of one)

    @property
    def is_main(self) -> bool:
        """Rank 0 alone prints, writes files and downloads: N copies of every line and file would help no
        one."""
        return self.rank == 0

    def agree(self, values: list[float], op: str = "max") -> list[float]:
        """Every rank's values combined elementwise ("max" or "sum"), so all ranks take the same decisions."""
        return list(values)

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """A device tensor summed over every rank, in place."""
        return t

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """What runs the training forward pass: the model (under torchrun, DistributedDataParallel around it,
        which averages the gradients over the ranks)."""
        return model

    def main_first(self, first, then):
        """first() on rank 0 (download, encode: write the token cache) while the other ranks wait, then then()
        on them (read that cache); one process just calls first()."""
        return first()

    def no_sync(self, step_model: torch.nn.Module, last: bool):
        """A context for one micro-step's backward: under torchrun, all but the last skip the gradient
        all-reduce."""
        return nullcontext()


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
    if ranks.world_size > 1:  # under torchrun (a RankGroup): every rank's own states, gathered
        states["ranks"] = ranks.gather(own)
    return states
