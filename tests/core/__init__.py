"""Tests of the pure decision core: revision hashing and the rollout state machine."""
