"""Tests of the download stage."""
