"""An example preprocessing mode added from outside the package (docs/ARCHITECTURE.md, "Adding a preprocessing mode").

``EAGLE_PLUGINS=gray_mode`` (with this folder on ``PYTHONPATH``) makes ``eagle fit --preprocess gray``
and the service's fit option ``{"preprocess": "gray"}`` work: the whole frame, resized like
``resize``, in grey (three equal channels). Its host form is the mode's definition, so the torch
path and an exported graph see the same pixels.
"""

from __future__ import annotations

import numpy as np

from eagle_iad.expert.preprocess import PreprocessSettings, Resize, ViewGeometry, preprocessor


@preprocessor("gray")
class Gray(Resize):
    """``resize`` of the image's luma (ITU-R 601), repeated on the three channels the backbone expects."""

    def host_pixels(self, rgb: np.ndarray, config: PreprocessSettings) -> tuple[np.ndarray, ViewGeometry]:
        luma = np.asarray(rgb, dtype=np.float32) @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
        gray = np.repeat(np.clip(np.rint(luma), 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
        return super().host_pixels(gray, config)
