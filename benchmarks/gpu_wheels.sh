#!/usr/bin/env bash
# Wheels of what a lent GPU machine lacks for gpu_check's pipeline part: DVC, DVCLive and
# ruamel.yaml with what they need, for its Python 3.12, less what its image already holds
# (the device tool's KINDS.md).  About 20 MB, within the device tool's 64 MiB a call.
#   bash benchmarks/gpu_wheels.sh [.whl]      # here, once; then carry .whl (README, Performance)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.whl}
mkdir -p "$out"
# antlr4-python3-runtime 4.9.3 (omegaconf's, for DVC's hydra) ships no wheel: build it here.
python -m pip wheel -q --no-deps -w "$out" antlr4-python3-runtime==4.9.3
python -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --find-links "$out" -d "$out" dvc dvclive ruamel.yaml
# The image holds these already; one version of each is installed there.
for name in attrs certifi charset_normalizer click colorama filelock frozenlist fsspec idna \
    markdown_it_py mdurl multidict networkx nvidia_ml_py packaging propcache psutil pygments \
    pyparsing python_dateutil pyyaml requests rich setuptools six tabulate tqdm \
    typing_extensions urllib3 yarl aiohappyeyeballs aiosignal pathspec; do
    rm -f "$out/$name"-[0-9]*.whl
done
du -sh "$out"
