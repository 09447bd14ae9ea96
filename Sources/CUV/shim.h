#ifndef CHORUS_CUV_SHIM_H
#define CHORUS_CUV_SHIM_H
#include <uv.h>
#endif
