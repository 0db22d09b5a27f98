"""Tests of the similar stage."""
