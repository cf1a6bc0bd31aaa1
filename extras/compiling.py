"""torch.compile for training, imported only where it is on (a CUDA GPU with Triton, or --compile on):
compiling takes a while, so it happens once before the clock starts, on a real micro-batch.
"""

import time

import torch

from extras.precision import Precision
from extras.ranks import Ranks
from extras.step import get_batch, sample_starts


def compile_for_training(step_model, train_ids, seed: int, micro_batch: int, precision: Precision,
                         ranks: Ranks, micro_steps: int = 1):
    """torch.compile step_model (the model, or the model already wrapped in DDP, so that the compiled backward
    overlaps DDP's gradient all-reduce) and compile it now, on a real micro-batch of the training shape
    (micro_batch windows of train_ids, drawn with seed), in training mode, with and without gradient sync
    when there are several micro-steps. So the first timed step does not compile again, and the minutes this
    can take are reported apart from the run's time. Returns the compiled module, or step_model itself if
    compiling fails."""
    t0 = time.perf_counter()
    module = getattr(step_model, "module", step_model)  # the GPT inside DDP
    T = module.config.block_size
    starts = sample_starts(len(train_ids), T, micro_batch, torch.Generator().manual_seed(seed))
    x, y = get_batch(train_ids, T, starts, precision.device)
    try:
        compiled = torch.compile(step_model, backend=precision.compile_backend)
        for last in ([False, True] if micro_steps > 1 else [True]):
            with ranks.no_sync(compiled, last):
                with precision.autocast():
                    _, loss = compiled(x, y)
                loss.backward()
    except Exception as e:  # a missing compiler, an unsupported GPU, a Triton error: all mean "train without"
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        print(f"torch.compile failed ({reason}); training without it")
        return step_model
    finally:
        module.zero_grad(set_to_none=True)
    print(f"compiled the model in {time.perf_counter() - t0:.1f}s (not counted in the run's time)")
    return compiled
