// Umbrella header of the torch_rational C++ API:
//   #include <torch_rational/torch_rational.h>
// and link the torch_rational::torch_rational CMake target (find_package(torch_rational)).
#pragma once

#include "ops/rational.h"
#include "ops/named_functions.h"
#include "ops/era_normalize.h"
#include "ops/pwlu_realign.h"
#include "fit/fit.h"
#include "modules/rational.h"
#include "ops/era.h"
#include "modules/era.h"
#include "ops/pwlu.h"
#include "modules/pwlu.h"
