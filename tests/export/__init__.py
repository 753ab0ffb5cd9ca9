"""Tests of beliefagent.export."""
