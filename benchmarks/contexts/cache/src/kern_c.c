#include "kernels.h"

UNIT(c)
