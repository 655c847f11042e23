"""What a run spread over several processes records (torchrun / ``accelerate launch``).

The train stage is the same code on one process and on several: the Trainer wraps the
model in DistributedDataParallel (gloo on CPUs, NCCL on GPUs) when ``WORLD_SIZE`` > 1,
each process reads its shard of every batch, and gradients are averaged before each
step. Only rank 0 writes the candidate (tunegate/training/train.py ``main``); these two
functions say what happened on each process and in the card.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from transformers import TrainerCallback

log = logging.getLogger("tunegate.training.train")


UNSUPPORTED = {
    "ACCELERATE_USE_FSDP": "FSDP",
    "ACCELERATE_USE_DEEPSPEED": "DeepSpeed",
}
"""Launchers the train stage refuses (the variables ``accelerate launch`` sets for them)."""


def check_launcher(env: dict[str, str] | None = None) -> None:
    """Refuse a sharded launch before anything loads. The stage saves the candidate on rank
    0 alone, and FSDP's (or DeepSpeed ZeRO-3's) full-state-dict gather is a collective
    every rank must join: rank 0 would wait for the others forever. Only DDP is supported
    (torchrun, or ``accelerate launch`` with deploy/accelerate/ddp-gpu.yaml)."""
    from tunegate.core.errors import ConfigError

    env = os.environ if env is None else env
    for var, name in UNSUPPORTED.items():
        if env.get(var, "").lower() in ("1", "true", "yes"):
            raise ConfigError(
                f"{name} launch ({var}={env[var]}): the train stage supports DDP only (torchrun, or "
                f"`accelerate launch --config_file deploy/accelerate/ddp-gpu.yaml`); with {name} rank 0's "
                "save would wait forever for the other ranks' weights"
            )


def distribution(trainer: Any) -> dict[str, Any]:
    """The card's ``distributed`` entry: processes, backend, the batch each took and the
    batch one optimizer step saw (``effective_batch`` = per-device batch x gradient
    accumulation x world size)."""
    import torch.distributed as dist

    args = trainer.args
    world = args.world_size
    return {
        "world_size": world,
        "backend": dist.get_backend() if dist.is_available() and dist.is_initialized() else None,
        "per_device_batch": args.per_device_train_batch_size,
        "grad_accum": args.gradient_accumulation_steps,
        "effective_batch": args.per_device_train_batch_size * args.gradient_accumulation_steps * world,
    }


def log_rank(trainer: Any, last_step: LastStepDigest | None) -> None:
    """One line per process: its optimizer steps, how many batches its shard holds, and (on
    several processes) a digest of its trainable weights after its last optimizer step,
    the same on every process when DDP kept them in step."""
    args = trainer.args
    log.info(
        "rank %d of %d: %d optimizer steps, %d batches of %d per epoch (shard of %d examples)%s",
        args.process_index,
        args.world_size,
        trainer.state.global_step,
        len(trainer.get_train_dataloader()),
        args.per_device_train_batch_size,
        len(trainer.train_dataset),
        f", weights after step {last_step.step}: {last_step.digest}" if last_step else "",
    )


def weights_digest(model: Any) -> str:
    """sha256 (12 hex) of the trainable parameters, in name order."""
    import hashlib

    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters(), key=lambda item: item[0]):
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:12]


class LastStepDigest(TrainerCallback):
    """A Trainer callback: the trainable weights' digest at each validation step and at the
    last step, before ``load_best_model_at_end`` reloads rank 0's best checkpoint on every
    process (which would make any two processes agree)."""

    def __init__(self) -> None:
        self.step, self.digest = 0, ""

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **_: Any) -> None:
        due = state.global_step == state.max_steps or (
            args.eval_steps and state.global_step % args.eval_steps == 0
        )
        if due and model is not None:
            self.step, self.digest = state.global_step, weights_digest(model)


def several_processes() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1
