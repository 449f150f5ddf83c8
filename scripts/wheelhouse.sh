#!/usr/bin/env bash
# The wheels aejax needs beyond what a JAX GPU image already holds, for an offline host:
#
#   scripts/wheelhouse.sh 3.12 [DIR]       # on a machine with network: DIR (default wheelhouse-py3.12)
#   pip install --no-index --find-links DIR aejax     # on the offline host, whose Python is 3.12
#
# A JAX GPU image holds JAX and jaxlib (with CUDA), Flax, optax, orbax-checkpoint, numpy, SciPy,
# scikit-learn, matplotlib, tqdm, protobuf, psutil, pyarrow, etils, absl-py, requests, wrapt, torch
# and what they depend on; they are left out (EXCLUDE below; set WHEELHOUSE_KEEP_ALL=1 to keep
# everything). What is left: Hydra and OmegaConf, the launchers and submitit, W&B and its
# dependencies, tensorflow-datasets and its, array_record, grain, and aejax's own wheel, built
# from this checkout. antlr4-python3-runtime 4.9.3 (what OmegaConf pins) and promise publish
# source distributions only: they are built here as (pure-Python) wheels first.
# Linux x86-64 wheels (manylinux); PLATFORMS overrides them (e.g. "manylinux_2_17_aarch64 any").
set -euo pipefail

pyver="${1:?usage: scripts/wheelhouse.sh PYTHON_VERSION [DIR]   (e.g. 3.12)}"
dir="${2:-wheelhouse-py${pyver}}"
root="$(cd "$(dirname "$0")/.." && pwd)"
platforms="${PLATFORMS:-manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 any}"
python="${PYTHON:-python3}"
mkdir -p "$dir"

# What the image has: these projects (normalised names, as in wheel file names) are not kept.
EXCLUDE='^(jax|jaxlib|jax_cuda[0-9]+_(plugin|pjrt)|jax_plugins?|flax|optax|orbax_checkpoint|orbax|chex|torch|triton|nvidia_.*|numpy|scipy|scikit_learn|joblib|threadpoolctl|matplotlib|contourpy|cycler|fonttools|kiwisolver|pillow|pyparsing|python_dateutil|six|packaging|tqdm|protobuf|psutil|pyarrow|etils|absl_py|requests|urllib3|idna|certifi|charset_normalizer|wrapt|typing_extensions|msgpack|rich|markdown_it_py|mdurl|pygments|tensorstore|treescope|pyyaml|humanize|nest_asyncio|simplejson|aiofiles|ml_dtypes|opt_einsum|toolz|fsspec|zipp|filelock|jinja2|markupsafe|networkx|sympy|mpmath|setuptools|attrs)$'

# 1. The source-only dependencies, as wheels (pure Python: any Python 3 takes them).
"$python" -m pip wheel --quiet --no-deps --no-binary :all: -w "$dir" "antlr4-python3-runtime==4.9.3" promise
# 2. aejax's own wheel, from this checkout.
"$python" -m pip wheel --quiet --no-deps --no-build-isolation -w "$dir" "$root"
# 3. Everything aejax needs for that Python, resolved together (so pinned pairs such as pydantic
#    and pydantic-core agree), binary wheels only, finding the wheels of steps 1-2 in the folder.
args=()
for p in $platforms; do args+=(--platform "$p"); done
"$python" -m pip download --quiet --only-binary=:all: --python-version "$pyver" --implementation cp "${args[@]}" \
    --find-links "$dir" -d "$dir" aejax
# 4. Drop what the image holds.
if [ "${WHEELHOUSE_KEEP_ALL:-0}" != 1 ]; then
    for wheel in "$dir"/*.whl; do
        name="$(basename "$wheel" | cut -d- -f1 | tr 'A-Z.-' 'a-z__')"
        if [[ "$name" =~ $EXCLUDE ]]; then rm -f "$wheel"; fi
    done
fi
echo "$(ls "$dir"/*.whl | wc -l) wheels, $(du -sh "$dir" | cut -f1) in $dir; on the offline host (Python $pyver, JAX installed):"
echo "  pip install --no-index --find-links $dir aejax"
