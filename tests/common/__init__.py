"""Tests of the common stage."""
