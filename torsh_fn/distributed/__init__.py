"""Data-parallel and sharded training on ``jax.sharding``, on one host or many."""
