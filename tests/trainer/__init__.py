"""Tests of the trainer stage."""
