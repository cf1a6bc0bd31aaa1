"""Everything past the workshop, one module per concern; the workshop's files (model.py, train.py,
generate.py) import what they need from here, and a learner opens a module only when they use what it is for.

    modern.py       the 2026 pieces: RoPE, RMSNorm, SwiGLU / ReLU², QK-norm, grouped-query attention, Muon, RECIPES
    engine.py       fast generation: KV cache, shift / slide windows, batched samples, half-width weights
    inside.py       looking inside a model: attention maps, next-token distributions (for visualize.py)
    page.py         the data of visualize.py's interactive page; page.html is its template
    tokenizer.py    CharTokenizer (stoi / itos), saving tokenizers in checkpoints, streamed decoding
    bpe.py          byte-level BPE (--tokenizer bpe)
    dataset.py      the token cache: any size of text encoded once, read back as a memory map
    step.py         random batches, the optimizers (AdamW, and Muon with --optimizer muon)
    control.py      the time budget, Ctrl-C, and what every torchrun rank agrees on each step
    distributed.py  torchrun: ranks, process groups
    precision.py    device, dtype, loss scaler, torch.compile: decided once, with the reasons
    evaluation.py   the exact loss over a whole split
    checkpoint.py   saving and loading checkpoints (plain dicts, weights_only)
    metrics.py      metrics.csv, train_log.csv, loss.png
    cli.py          flags from dataclasses, one-line errors, exit codes
"""
