/* Shared by the first-party plugins' C extensions: GCC compiles each function marked CLONES for AVX-512, AVX2 and
 * generic x86-64 and picks one at run time (target_clones; no -march=native, so a wheel runs on any x86-64). */
#ifndef GROKBENCH_CLONES_H
#define GROKBENCH_CLONES_H

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

#endif
