"""xcalab: attention-based keyframe localization in X-ray coronary angiography (XCA).

The package is read top to bottom like the seed paper (STA-IPCon, IEEE TMI 2023):

- ``xcalab.config``            presets (smoke / teach / paper): one source of truth for every size and seed
- ``xcalab.data.io``           cines in and out: DICOM XA, folders of frames, ``.npy``
- ``xcalab.data.annotations``  ActivityNet-1.3 JSON, keyframes <-> actions, frame <-> seconds <-> feature grid
- ``xcalab.data.curves``       simple time curves of a cine (mean intensity, vessel area)
- ``xcalab.viz``               pure plotting functions that return a Figure
- ``xcalab.notebook``          ``setup()`` for the notebooks
"""

__version__ = "0.1.0"
