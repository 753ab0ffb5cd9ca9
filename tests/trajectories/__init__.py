"""Tests of beliefagent.trajectories."""
