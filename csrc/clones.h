// HWQ_CLONES: a function compiled for AVX-512, AVX2 and baseline x86-64, the loader picking the
// best one for the CPU at run time (GCC target_clones), never -march=native. For self-contained
// loops over plain arrays (auto-vectorized): such a function calls no shared inline code, so no
// AVX-512 instruction can leak to other callers (see isa.h).
#pragma once
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HWQ_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define HWQ_CLONES
#endif
