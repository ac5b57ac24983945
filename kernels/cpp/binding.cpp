// Python bindings for the edgegen C++ kernels (placeholder until the kernels land).
#include <nanobind/nanobind.h>

namespace nb = nanobind;

NB_MODULE(_cpp, m) {
    m.doc() = "edgegen C++ kernels";
    m.def("version", []() { return 1; });
}
