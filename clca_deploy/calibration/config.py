"""What an INT8 calibration is asked to do: images, range method, and how the float set is chosen."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clca_deploy.errors import ClcaDeployError

METHODS = ("entropy", "percentile", "minmax")

# Share of the calibration images the placement search holds out when --held-out-images is not given.
DEFAULT_HELD_OUT_SHARE = 4  # one in four
MIN_HELD_OUT = 16
# Images the search reads from --held-out-data when --held-out-images is not given.
DEFAULT_HELD_OUT_DATA_IMAGES = 512


@dataclass(frozen=True)
class CalibrationConfig:
    """INT8 calibration settings. The float set is the conservative placement by default; with
    ``target_agreement`` it is searched on held-out images (``held_out_data``, images the model never
    trained on, else a share of the calibration images); with ``placement`` it is read from an
    earlier search's report (and the same images are held out, so the same file comes out)."""

    data: Path
    num_images: int = 256
    method: str = "minmax"
    csv: str | None = None
    image_folder: str | None = None
    use_cache: bool = True
    target_agreement: float | None = None
    held_out_images: int | None = None
    held_out_data: Path | None = None
    placement: Path | None = None
    openvino: bool = False  # also write OpenVINO's form of the file (openvino_form.py)

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ClcaDeployError(f"unknown calibration method '{self.method}'; use one of {', '.join(METHODS)}.")
        if not Path(self.data).exists():
            raise ClcaDeployError(f"calibration data {self.data} does not exist.")
        if self.target_agreement is not None and self.placement is not None:
            raise ClcaDeployError("--target-agreement searches a placement and --placement reuses one; pass one of them.")
        if self.target_agreement is not None and not 0 < self.target_agreement <= 100:  # NaN fails this too
            raise ClcaDeployError(f"--target-agreement is a percentage in (0, 100], got {self.target_agreement}.")
        if (self.held_out_images is not None or self.held_out_data is not None) and self.target_agreement is None:
            raise ClcaDeployError("--held-out-images and --held-out-data are for the placement search; pass --target-agreement too.")
        if self.held_out_data is not None and not Path(self.held_out_data).exists():
            raise ClcaDeployError(f"held-out data {self.held_out_data} does not exist.")
        if self.held_out_images is not None and self.held_out_images < 1:
            raise ClcaDeployError(f"--held-out-images must be at least 1, got {self.held_out_images}.")
        if self.held_out_data is None and self.held_out_images is not None and self.held_out_images >= self.num_images:
            raise ClcaDeployError(
                f"--held-out-images ({self.held_out_images}) must leave calibration images: keep it below --num-images "
                f"({self.num_images}), or judge on other images with --held-out-data."
            )

    def calibration_held_out(self) -> int:
        """Images the search takes out of the calibration set: none when it judges on --held-out-data,
        else as asked or a quarter of the set (at least 16)."""
        if self.target_agreement is None or self.held_out_data is not None:
            return 0
        if self.held_out_images is not None:
            return self.held_out_images
        return min(self.num_images - 1, max(MIN_HELD_OUT, self.num_images // DEFAULT_HELD_OUT_SHARE))

    def held_out_data_images(self) -> int:
        return self.held_out_images if self.held_out_images is not None else DEFAULT_HELD_OUT_DATA_IMAGES


def calibrated_path(model: str | Path, precision: str) -> Path:
    """Where a reduced-precision file goes by default: ``model.onnx`` -> ``model.int8.onnx`` / ``model.fp16.onnx``."""
    model = Path(model)
    return model.with_name(model.name.removesuffix(".onnx") + f".{precision}.onnx")
