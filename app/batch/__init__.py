"""Batch prediction and evaluation of a file by a trained model, run by the workers."""
