"""The keyed random streams of a run: every random draw is a pure function of (seed, stream, ...), so a run
resumed at any step, or shared among torchrun's processes, draws what one uninterrupted process draws."""

BATCHES = 0  # the training batches' window starts: Philox counter (BATCHES, 0, micro-batch, step), data/loader.py
EVAL_WINDOWS = 1  # the train evaluation's fixed windows: Philox counter (EVAL_WINDOWS, 0, 0, 0), data/loader.py
DROPOUT = 2  # the CPU's dropout masks: PCG64 seeded by (seed, DROPOUT, micro-batch, step), layers.py
