"""Data: cines in and out, annotations, simple time curves, and the XCA-Synth simulator."""
