"""Tests of the statistical judge: analysis/, canaryd.core.judges and ``canaryd analyze``."""
