// Boost.JSON compiled into the fuzz build (instead of linking the distro's
// libboost_json) so the fuzzer gets coverage feedback from inside the parser.
#include "boost/json/src.hpp"
