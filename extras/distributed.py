"""Running on several processes: `torchrun --nproc_per_node=N train.py` starts N copies of the script, each
with RANK, LOCAL_RANK and WORLD_SIZE in its environment. Each copy (a rank) trains the same model on its own
share of every batch, and DistributedDataParallel averages the gradients across ranks, so all copies take the
same optimizer step.

Only a torchrun launch imports this module. Each rank is a RankGroup: extras/ranks.py's Ranks, whose methods
(what the loop and the evaluations ask of the ranks, and which do nothing in one process) here go through
torch.distributed.
"""

import datetime
import os
import sys
from contextlib import nullcontext, redirect_stdout
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from extras.cli import EXIT_FAILED, CLIError
from extras.ranks import Ranks

# Generous: the other ranks wait here while rank 0 downloads and encodes (or trains a BPE on) a large corpus
# once.
TIMEOUT = datetime.timedelta(hours=1)


@dataclass
class RankGroup(Ranks):
    """This process's place in a torchrun launch, and what it does together with the other ranks."""

    launched: bool = True
    # a gloo group for host-side agreements when the main group is nccl; None: the main one
    cpu_group: object = None

    def agree(self, values: list[float], op: str = "max") -> list[float]:
        """Every rank's values combined elementwise ("max" or "sum"), in one host-side all-reduce."""
        t = torch.tensor(values, dtype=torch.float64)  # float64: exact for counts up to 2**53
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM, group=self.cpu_group)
        return t.tolist()

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """A device tensor summed over every rank, in place."""
        dist.all_reduce(t)
        return t

    def gather(self, states: dict) -> list[dict]:
        """Every rank's random states (a dict of CPU byte tensors, even the CUDA generator's), in rank
        order."""
        gathered = {}
        for key, state in states.items():
            gathered[key] = [torch.empty_like(state) for _ in range(self.world_size)]
            dist.all_gather(gathered[key], state, group=self.cpu_group)
        return [{key: gathered[key][r] for key in states} for r in range(self.world_size)]

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model in DistributedDataParallel: it copies rank 0's weights to every rank now, and from then
        on averages the gradients over ranks during backward()."""
        device = next(model.parameters()).device
        return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    def no_sync(self, step_model: torch.nn.Module, last: bool):
        """DDP all-reduces gradients during backward(). Between micro-steps that traffic would be wasted
        (bn #30): all but the last micro-step run under no_sync(), and the last sends the gradients summed
        over all of them."""
        ddp = getattr(step_model, "_orig_mod", step_model)  # under torch.compile, the DDP module is inside
        return nullcontext() if last else ddp.no_sync()

    def main_first(self, first, then):
        """Rank 0 calls first() (which downloads and encodes the data, writing the token cache) while the
        others wait; then they call then() (which reads that cache). A CLIError on rank 0 stops every rank,
        and rank 0 alone says why."""
        result, failure = None, None
        if self.is_main:
            try:
                result = first()
            except CLIError as e:
                failure = e
        code = int(self.agree([failure.code if failure else 0])[0])  # also where the others wait for rank 0
        if code and failure is None:
            failure = CLIError("", code)  # rank 0 has said what went wrong
        if failure:
            raise failure
        return result if self.is_main else then()

    def wait_for_all(self) -> None:
        """Return once every rank has got here."""
        dist.barrier(group=self.cpu_group)


def pick_backend(use_cuda: bool) -> str:
    """nccl between CUDA GPUs where this torch has it (not on Windows); gloo everywhere else."""
    return "nccl" if use_cuda and dist.is_nccl_available() else "gloo"


def start_ranks(requested_device: str) -> Ranks:
    """Join the torchrun process group if there is one, and take this rank's GPU."""
    if "RANK" not in os.environ:
        return Ranks()
    ranks = RankGroup(int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"]))
    use_cuda = torch.cuda.is_available() and requested_device in ("auto", "cuda")
    if not use_cuda and (requested_device == "mps"
                         or requested_device == "auto" and torch.backends.mps.is_available()):
        raise CLIError("torchrun needs CUDA GPUs or CPUs: torch.distributed cannot use Apple MPS; add "
                       "--device cpu")
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


def run_on_ranks(requested_device: str, run) -> int:
    """Join the other ranks, call run(ranks) with only rank 0's output shown, and leave together; returns
    run's exit code. What every rank hits alike (bad flags, bad data) rank 0 alone reports (run_cli prints
    it); the other ranks report only failures of their own."""
    ranks = Ranks()
    try:
        ranks = start_ranks(requested_device)
        with open(os.devnull, "w") as devnull:
            with redirect_stdout(devnull) if not ranks.is_main else nullcontext():
                code = run(ranks)
        ranks.wait_for_all()  # the ranks leave together (one that left early has been seen to abort gloo)
        return code
    except CLIError as e:
        if ranks.is_main:
            raise
        if e.code == EXIT_FAILED and str(e):
            print(f"error on rank {ranks.rank}: {e}", file=sys.stderr)
        return e.code
    # When rank 0 stops on an error of its own (a full disk: only rank 0 writes), the others find the
    # connection closed at their next collective (gloo's words); rank 0's line has said why.
    except RuntimeError as e:
        if ranks.is_main or "closed by peer" not in str(e):
            raise
        print(f"error on rank {ranks.rank}: stopped, as rank 0 did (its error says why)", file=sys.stderr)
        return EXIT_FAILED
    finally:
        stop_ranks()


def stop_ranks() -> None:
    """Leave the process group, if we joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()
