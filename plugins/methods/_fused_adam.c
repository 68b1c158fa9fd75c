/* Adam's update in two passes instead of eight operators per parameter tensor
 * (grokbench_plugins.methods._fused_adam).
 *
 * Plain C, no torch headers: plugins/methods/fused_adam.py loads this file's shared object with ctypes. The
 * arithmetic is that of torch.optim.Adam's single-tensor path on the CPU, operation for operation, so the numbers
 * are the same bit for bit (tests/test_fused_adam.py checks it against the torch path):
 *
 *   moments:  p ← p·decay (when decay ≠ 1)                     p.mul_(1 − ηλ)
 *             m ← m + w (g − m), fused, or g + (w − 1)(g − m)   m.lerp_(g, w): torch's vectorized lerp, an FMA
 *             v ← (c g) g + v β₂, fused                          v.mul_(β₂).addcmul_(g, g, value=c)
 *   (between the passes the caller writes d = √v with torch.sqrt: torch takes MKL's square root there, which is
 *    not always the correctly rounded one, so the same bits need the same routine)
 *   update:   p ← p + (s m) / (d / b + ε)                        d.div_(b).add_(ε); p.addcdiv_(m, d, value=s)
 *
 * Compiled with -ffp-contract=off: the only fused multiply-adds are the explicit fma() calls, where torch's kernels
 * have them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

#include "_clones.h"

#define KERNELS(T, SUFFIX, FMA)                                                                                      \
    CLONES static void moments_##SUFFIX(T *restrict p, const T *restrict g, T *restrict m, T *restrict v,          \
                                        int64_t n, T decay, T w, T beta2, T c) {                                    \
        if (decay != (T)1)                                                                                           \
            for (int64_t i = 0; i < n; i++) p[i] *= decay;                                                           \
        const int small = w < (T)0.5 && w > (T)-0.5; /* torch's lerp: |w| < 0.5 takes m + w (g − m) */            \
        const T coeff = small ? w : w - (T)1;                                                                        \
        for (int64_t i = 0; i < n; i++) {                                                                            \
            const T gi = g[i];                                                                                       \
            m[i] = FMA(coeff, gi - m[i], small ? m[i] : gi);                                                         \
            v[i] = FMA(c * gi, gi, v[i] * beta2);                                                                    \
        }                                                                                                            \
    }                                                                                                                \
                                                                                                                     \
    CLONES static void update_##SUFFIX(T *restrict p, const T *restrict m, const T *restrict d, int64_t n, T b,     \
                                       T eps, T s) {                                                                 \
        for (int64_t i = 0; i < n; i++) p[i] = p[i] + (s * m[i]) / (d[i] / b + eps);                                 \
    }

KERNELS(float, f32, fmaf)
KERNELS(double, f64, fma)

/* The exported entry points: dtype is the element size, 4 (float32) or 8 (float64); 0 on success, -1 otherwise.
 * The scalars come as doubles and are rounded to the tensors' dtype, as torch rounds a Python number. */
int gb_adam_moments(void *p, const void *g, void *m, void *v, int64_t n, double decay, double w, double beta2,
                    double c, int dtype) {
    if (dtype == 4)
        moments_f32(p, g, m, v, n, (float)decay, (float)w, (float)beta2, (float)c);
    else if (dtype == 8)
        moments_f64(p, g, m, v, n, decay, w, beta2, c);
    else
        return -1;
    return 0;
}

int gb_adam_update(void *p, const void *m, const void *d, int64_t n, double b, double eps, double s, int dtype) {
    if (dtype == 4)
        update_f32(p, m, d, n, (float)b, (float)eps, (float)s);
    else if (dtype == 8)
        update_f64(p, m, d, n, b, eps, s);
    else
        return -1;
    return 0;
}

/* An importable (empty) module, so that the normal install builds and places it like any extension. */
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "_fused_adam",
                                    .m_doc = "Adam's update in two fused passes; called through ctypes.", .m_size = -1};

PyMODINIT_FUNC PyInit__fused_adam(void) { return PyModule_Create(&module); }
