#ifndef CHORUS_CUV_SHIM_H
#define CHORUS_CUV_SHIM_H
#include <uv.h>
#include <signal.h>
#include <sys/prctl.h>

// SIGKILL when the thread that spawned this process exits: a run started by `chorus worker`
// must not outlive the worker (its lease lapses and another worker resumes the run; an
// orphan would run it twice). prctl is variadic, so Swift cannot call it directly.
static inline int chorus_die_with_parent(void) { return prctl(PR_SET_PDEATHSIG, SIGKILL); }

// Names the calling thread in the kernel (15 bytes at most), as /proc, top and perf show it.
static inline int chorus_name_thread(const char *name) { return prctl(PR_SET_NAME, name); }
#endif
