# Sourced by the bench scripts (after setting here, this directory): sets
# root (the checkout) and build ($root/build), configures build/ as
# RelWithDebInfo on first use, and builds the product there.
root=$(dirname "$here")
build="$root/build"
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
fi
cmake --build "$build" -j2 >&2
