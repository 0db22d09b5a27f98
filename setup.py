"""Installable package set for the iMaterialist fashion TFX pipeline.

Also serves as Dataflow's ``--setup_file``: workers install the same packages.
"""

import setuptools

REQUIRED = [
    "tfx==1.16.0",
    # tensorflow_transform imports dill, which recent Beam releases stop installing.
    "dill",
    # TFT and TFMA 1.16 support Keras 2 only: tf-keras, with TF_USE_LEGACY_KERAS=1.
    "tf-keras>=2.16,<2.17",
    # trainer/tuning.py imports it (the Tuner's trials); TFX 1.16 pins the same range.
    "keras-tuner>=1.0.4,<2",
    "Pillow",
    # The download job's JPEG path (decode at a reduced DCT scale, resize, encode): a cheaper resize
    # where it is at least as close to Lanczos as Pillow's (docs/benchmarks.md, "Download throughput:
    # OpenCV for JPEG"). 4.12 and later need numpy 2, which TensorFlow 2.16 does not take: the lock has 4.11.
    "opencv-python-headless",
    # Streams the 375 MB competition JSON instead of loading it whole.
    "ijson",
    "google-crc32c",
    "aiohttp",
    # imat report's charts: self-contained HTML with plotly.js inlined.
    "plotly>=7.1,<8",
]

setuptools.setup(
    name="imat-fashion-tfx",
    version="0.1.0",
    description="TFX pipeline for multi-label fashion image classification (iMaterialist 2018 layout)",
    python_requires=">=3.10,<3.11",
    # kubeflow/ holds the pipeline image (a Dockerfile), no Python: an importable `kubeflow` package
    # would shadow the Kubeflow SDK's.
    packages=setuptools.find_packages(include=["imat_common*", "pipeline*", "components*", "trainer*", "cli*"]),
    install_requires=REQUIRED,
    extras_require={
        # Only to compile and submit to Kubeflow Pipelines / Vertex AI. A bare `pip install kfp`
        # takes kfp 2.17 with protobuf 6, which breaks TensorFlow 2.16: hold protobuf at 3.20.x.
        "kubeflow": ["kfp>=2,<3", "kfp-pipeline-spec>=0.2.2", "protobuf>=3.20.3,<3.21"],
        # Approximate nearest-neighbour indexes for similar-product search (compared in benchmarks/).
        "similar": ["faiss-cpu", "hnswlib"],
        # playwright drives the system's Chromium (its own browser download is not used);
        # nbclient and ipykernel execute notebooks/ headless.
        "test": [
            "pytest",
            "pytest-timeout",
            "pytest-xdist",
            "ruff",
            "playwright>=1.65,<2",
            "nbclient>=0.10",
            "ipykernel>=6",
        ],
    },
    entry_points={"console_scripts": ["imat=cli.main:main"]},
)
