#!/usr/bin/env bash
# Installs what simul needs to build, test and benchmark, from Debian's
# packages, and nothing when everything is present already.
#
#   tools/install-deps.sh          # as root, or with sudo available
#
# Why each package is here is in the README's "Dependencies" section.
set -euo pipefail

packages=(
  cmake ninja-build g++ pkg-config  # the build
  libuv1-dev                        # simul::loop's event loop
  libssl-dev                        # simul::loop's TLS streams (OpenSSL)
  libcereal-dev                     # simul::procpool's serialization
  libgtest-dev libgmock-dev         # the tests
  libbenchmark-dev                  # the benchmarks
  libboost1.81-dev libtbb-dev       # peers measured by the benchmarks (Asio, oneTBB)
  python3 python3-uvloop            # peers measured by the benchmarks (asyncio, concurrent.futures)
  libopenmpi-dev openmpi-bin        # simul::mpipool (Open MPI; the module is skipped without it)
  python3-mpi4py                    # the MPI pool benchmark's peer (mpi4py.futures)
  libcurl4-openssl-dev              # simul::http (libcurl; skipped when missing)
  nginx-light                       # simul::http: the HTTP/2 test server and the static-file benchmark server
  python3-aiohttp                   # simul::http's test server and benchmark peer
  clang-14 libclang-rt-14-dev       # the fuzz preset: libFuzzer with ASan and UBSan (docs/fuzzing.md)
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
as_root=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "install-deps: missing ${missing[*]}; run this script as root (or install sudo)" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
