#include "kernels.h"

UNIT(d)
