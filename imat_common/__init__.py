"""What every stage shares, without TensorFlow or Beam: feature keys and the label map
(``features``), the exported model's signature, output and file names (``serving``), the
local work folder's layout (``workdir``) and the Keras 2 switch (``keras2``).

The download job, the similar-product index, the commands and the model code import it; it
imports nothing of theirs.
"""
