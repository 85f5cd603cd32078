"""Pallas kernels for the hot ops, each beside its ``jax.numpy`` reference, with dispatch.

This package imports only jax and numpy.
"""
