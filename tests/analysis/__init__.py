"""Tests of the statistical judge: analysis/, canaryd.core.judging and ``canaryd analyze``."""
