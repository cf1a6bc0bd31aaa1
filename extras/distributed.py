"""Running on several processes: `torchrun --nproc_per_node=N train.py` starts N copies of the script, each
with RANK, LOCAL_RANK and WORLD_SIZE in its environment. Each copy (a rank) trains the same model on its own
share of every batch, and DistributedDataParallel averages the gradients across ranks, so all copies take the
same optimizer step.

Started with plain `python`, there is one rank and every function here does nothing.
"""

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from extras.cli import CLIError

# Generous: the other ranks wait here while rank 0 downloads and encodes (or trains a BPE on) a large corpus
# once.
TIMEOUT = datetime.timedelta(hours=1)


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


def pick_backend(use_cuda: bool) -> str:
    """nccl between CUDA GPUs where this torch has it (not on Windows); gloo everywhere else."""
    return "nccl" if use_cuda and dist.is_nccl_available() else "gloo"


def start_ranks(requested_device: str) -> Ranks:
    """Join the torchrun process group if there is one, and take this rank's GPU."""
    if "RANK" not in os.environ:
        return Ranks()
    ranks = Ranks(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"]), launched=True)
    use_cuda = torch.cuda.is_available() and requested_device in ("auto", "cuda")
    if use_cuda:
        if ranks.local_rank >= torch.cuda.device_count():
            raise CLIError(f"torchrun started more processes on this machine than it has GPUs "
                           f"({torch.cuda.device_count()}); use --nproc_per_node={torch.cuda.device_count()}")
        torch.cuda.set_device(ranks.local_rank)
    backend = pick_backend(use_cuda)
    dist.init_process_group(backend, timeout=TIMEOUT)
    if backend == "nccl":
        # nccl moves only GPU tensors; small host-side numbers (the clock, Ctrl-C, eval sums) go through gloo,
        # with the same patience, since this group too waits for rank 0 to finish encoding.
        ranks.cpu_group = dist.new_group(backend="gloo", timeout=TIMEOUT)
    return ranks


def stop_ranks() -> None:
    """Leave the process group, if we joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


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


def wrap_for_ranks(model: torch.nn.Module, device: torch.device, ranks: Ranks) -> torch.nn.Module:
    """Under torchrun, the model wrapped in DistributedDataParallel: it copies rank 0's weights to every rank
    now, and from then on averages the gradients over ranks during backward(). In one process, the model
    itself."""
    if not ranks.launched:
        return model
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
