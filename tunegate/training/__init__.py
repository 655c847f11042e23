"""The prepare, base and train stages: data validated, scrubbed and split; the base model
fetched; LoRA or full fine-tuning with checkpoints chosen on validation. Imports the
kernel (``tunegate.core``) only."""
