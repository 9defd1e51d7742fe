#include "kernels.h"

UNIT(b)
