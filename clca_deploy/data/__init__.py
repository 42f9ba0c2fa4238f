"""The one eval preprocessing, image reading and dataset readers (ImageFolder, official CSV, flat)."""

from clca_deploy.data.datasets import (
    Batch, BatchReader, ImageDataset, ImageRecord, image_paths, iter_batches, open_dataset, open_image_list,
)
from clca_deploy.data.images import DEFAULT_MAX_PIXELS, ImageReadError, decode_image, load_image, to_rgb
from clca_deploy.data.scan import IMAGE_EXTENSIONS, SkippedImage, is_image_file
from clca_deploy.data.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PreprocessConfig,
    default_resize_size,
    preprocess,
    preprocess_batch,
    preprocess_into,
)
from clca_deploy.data.synthetic import SyntheticDatasetInfo, SyntheticLeafConfig, write_synthetic_dataset

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Batch",
    "BatchReader",
    "ImageDataset",
    "ImageReadError",
    "ImageRecord",
    "PreprocessConfig",
    "SkippedImage",
    "SyntheticDatasetInfo",
    "SyntheticLeafConfig",
    "decode_image",
    "default_resize_size",
    "image_paths",
    "is_image_file",
    "iter_batches",
    "load_image",
    "open_dataset",
    "open_image_list",
    "preprocess",
    "preprocess_batch",
    "preprocess_into",
    "to_rgb",
    "write_synthetic_dataset",
]
