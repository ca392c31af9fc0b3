"""The training engine both papers share: the sharded trainer (`trainer`), the `fit` loop (`loop`),
atomic checkpoints (`checkpoint`), the run directory's lifecycle and lock (`run`), metrics and
TensorBoard (`metrics`). A paper supplies its loss (a `ShardedTrainer` subclass) and a `Task`: its
steps, batches and epoch-end evaluation. Nothing here imports either paper."""
