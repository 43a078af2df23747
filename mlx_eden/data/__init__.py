"""Backend-neutral data pipeline: JSONL records → token ids + masks → numpy batches."""
