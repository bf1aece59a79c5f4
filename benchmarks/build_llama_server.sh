#!/usr/bin/env bash
# Build llama.cpp's own server (the reference peer) from the sources inside the llama-cpp-python
# sdist that Flexi uses, so both run the same llama.cpp. The build stays in the user's cache
# (${XDG_CACHE_HOME:-~/.cache}/flexi-build, or FLEXI_BUILD_CACHE), outside the checkout, so a fresh clone (CI)
# finds it again, as pip finds its wheels. About 6 minutes on 2 cores. Prints the binary's path.
# FLEXI_LLAMA_SERVER names a binary built before (another worktree, a CI cache): then nothing is built.
# The tests (tests/llama_server.py) look in the same two places.
set -euo pipefail
if [ -n "${FLEXI_LLAMA_SERVER:-}" ]; then
  if [ -x "$FLEXI_LLAMA_SERVER" ]; then echo "$FLEXI_LLAMA_SERVER"; exit 0; fi
  echo "FLEXI_LLAMA_SERVER=$FLEXI_LLAMA_SERVER is not an executable file" >&2; exit 1
fi
cache="${FLEXI_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flexi-build}"
version="$(python -c 'import llama_cpp; print(llama_cpp.__version__)')"
bin="$cache/llama.cpp-$version/build/bin/llama-server"
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
mkdir -p "$cache"
cd "$cache"
if [ ! -d "llama_cpp_python-$version" ]; then
  python -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$version" -d sdist >&2
  tar xzf "sdist/llama_cpp_python-$version.tar.gz"
fi
src="$cache/llama_cpp_python-$version/vendor/llama.cpp"
rm -rf "$cache/llama.cpp-$version" && cp -r "$src" "$cache/llama.cpp-$version"
cd "$cache/llama.cpp-$version"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF >&2
cmake --build build -j "$(nproc)" --target llama-server llama-batched-bench >&2
echo "$bin"
