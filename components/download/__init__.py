"""The download job: image URLs to sharded TFRecords (``job.py``). Imports no TensorFlow."""
