"""Data: sources (a table from any source), encoders (columns -> tensors, fitted on the training
split), splits, and batches (slices of tensors prepared once)."""
