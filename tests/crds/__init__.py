"""Tests of the generated CustomResourceDefinitions (crds/) against the pydantic models."""
