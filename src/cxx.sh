#!/bin/sh
# Compiler dispatch for nginx's build: sh cxx.sh CXX CC ARGS...
# C sources go to CC unchanged; C++ sources go to CXX with the project's
# C++ flags and without the C-only warnings nginx adds to CFLAGS.
cxx=$1
cc=$2
shift 2

for arg in "$@"; do
    case "$arg" in
        *.cpp) is_cxx=1 ;;
    esac
done

if [ -z "$is_cxx" ]; then
    exec $cc "$@"
fi

for arg in "$@"; do
    shift
    case "$arg" in
        -Wmissing-prototypes|-Wstrict-prototypes|-Wold-style-definition) ;;
        -Wnested-externs|-Wbad-function-cast|-Wdeclaration-after-statement) ;;
        -std=c*|-std=gnu*) ;;
        *) set -- "$@" "$arg" ;;
    esac
done

exec $cxx -std=c++17 -fno-exceptions -fno-rtti -fvisibility=hidden \
    -fvisibility-inlines-hidden $NGX_ASYNC_CXXFLAGS "$@"
