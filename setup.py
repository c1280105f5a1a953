"""What pyproject.toml cannot say: the top-level weights/ folder is installed as the package `cdtcodec_weights`
(setuptools' packages.find names a package after its folder, so a mapped one must be listed here)."""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["cdtcodec*", "bitstream*"]) + ["cdtcodec_weights"],
      package_dir={"cdtcodec_weights": "weights"})
