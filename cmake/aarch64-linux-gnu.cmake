# Cross-compiling sdgen for 64-bit ARM Linux with Debian's gcc-aarch64-linux-gnu and the arm64
# multiarch libraries (libopenblas-dev:arm64, libcjson-dev:arm64, zlib1g-dev:arm64), which
# scripts/test-aarch64.sh installs; the tests then run under qemu-user:
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
# Debian multiarch: arm64 libraries live in /usr/lib/aarch64-linux-gnu and their
# architecture-specific headers in /usr/include/aarch64-linux-gnu; with this set, find_library and
# find_path look there (and never in the host's x86_64-linux-gnu folders).
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
# ctest runs the test programs through qemu-user. -L /: the programs load with the arm64 multiarch
# loader (/lib/ld-linux-aarch64.so.1 of libc6:arm64), the same glibc build as the libc.so.6 they
# find in /lib/aarch64-linux-gnu. With -L /usr/aarch64-linux-gnu the loader came from
# libc6-arm64-cross (2.36-8cross1) but libc.so.6 from libc6:arm64 (2.36-9+deb12u14), and with
# that mismatch every fork() and pthread_create() hung (a static program ran fine).
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /)
