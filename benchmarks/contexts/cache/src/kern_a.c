#include "kernels.h"

UNIT(a)
