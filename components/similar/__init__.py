"""Similar-product search: embed a catalogue with the trained model, index it, query it."""
