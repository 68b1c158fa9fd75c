/* The memory-bound passes of the quadratic network's training step, fused
 * (grokbench_plugins.models._fused_quadratic).
 *
 * Plain C, no torch headers: plugins/models/fused_quadratic.py loads this file's shared object with ctypes and
 * passes the data pointers of contiguous CPU tensors. With idx [n, k] the rows of W (rows of all stacked seeds,
 * already offset), width h:
 *
 *   forward:  act[i] = (Σ_j W[idx[i, j]])²                    (z itself is not stored)
 *   backward: grad_W = 0; grad_W[idx[i, j]] += 2 z[i] ⊙ gz[i]  (z recomputed from the rows of W, in cache)
 *
 * The work is split over threads by columns (multiples of 16 floats), so no two threads write the same cache
 * line, and every element is summed over the examples in the same order whatever the number of threads:
 * results do not depend on it. No atomics.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "_clones.h"

#define TILE 256
#define MAX_THREADS 64

#define KERNELS(T, SUFFIX)                                                                                           \
    CLONES static void forward_##SUFFIX(const T *restrict W, const int64_t *restrict idx, T *restrict act,          \
                                        int64_t n, int64_t k, int64_t h, int64_t c0, int64_t c1) {                   \
        const int64_t m = c1 - c0;                                                                                   \
        for (int64_t i = 0; i < n; i++) {                                                                            \
            const int64_t *r = idx + i * k;                                                                          \
            T *restrict o = act + i * h + c0;                                                                        \
            const T *restrict w0 = W + r[0] * h + c0;                                                                \
            if (k == 2) {                                                                                            \
                const T *restrict w1 = W + r[1] * h + c0;                                                            \
                for (int64_t c = 0; c < m; c++) {                                                                    \
                    T z = w0[c] + w1[c];                                                                             \
                    o[c] = z * z;                                                                                    \
                }                                                                                                    \
                continue;                                                                                            \
            }                                                                                                        \
            for (int64_t c = 0; c < m; c++) o[c] = w0[c];                                                           \
            for (int64_t j = 1; j < k; j++) {                                                                        \
                const T *restrict w = W + r[j] * h + c0;                                                             \
                for (int64_t c = 0; c < m; c++) o[c] += w[c];                                                        \
            }                                                                                                        \
            for (int64_t c = 0; c < m; c++) o[c] *= o[c];                                                           \
        }                                                                                                            \
    }                                                                                                                \
                                                                                                                     \
    CLONES static void backward_##SUFFIX(const T *restrict W, const int64_t *restrict idx, const T *restrict gz,    \
                                         T *gW, int64_t n, int64_t k, int64_t rows, int64_t h, int64_t c0,          \
                                         int64_t c1) {                                                               \
        T d[TILE];                                                                                                   \
        for (int64_t r = 0; r < rows; r++) memset(gW + r * h + c0, 0, (size_t)(c1 - c0) * sizeof(T));              \
        for (int64_t i = 0; i < n; i++) {                                                                            \
            const int64_t *r = idx + i * k;                                                                          \
            for (int64_t t = c0; t < c1; t += TILE) {                                                                \
                const int64_t m = c1 - t < TILE ? c1 - t : TILE;                                                     \
                const T *restrict w0 = W + r[0] * h + t;                                                             \
                const T *restrict g = gz + i * h + t;                                                                \
                for (int64_t c = 0; c < m; c++) d[c] = w0[c];                                                        \
                for (int64_t j = 1; j < k; j++) {                                                                    \
                    const T *restrict w = W + r[j] * h + t;                                                          \
                    for (int64_t c = 0; c < m; c++) d[c] += w[c];                                                    \
                }                                                                                                    \
                for (int64_t c = 0; c < m; c++) d[c] = d[c] * g[c] * (T)2;                                           \
                for (int64_t j = 0; j < k; j++) {                                                                    \
                    T *restrict o = gW + r[j] * h + t;                                                               \
                    for (int64_t c = 0; c < m; c++) o[c] += d[c];                                                    \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
    }

KERNELS(float, f32)
KERNELS(double, f64)

/* One call's arguments; each thread runs columns [c0, c1). */
typedef struct {
    int backward, dtype;
    const void *W, *gz;
    const int64_t *idx;
    void *out;
    int64_t n, k, rows, h, c0, c1;
} Job;

static void *run_job(void *arg) {
    const Job *a = (const Job *)arg;
    if (a->dtype == 4) {
        if (a->backward)
            backward_f32(a->W, a->idx, a->gz, a->out, a->n, a->k, a->rows, a->h, a->c0, a->c1);
        else
            forward_f32(a->W, a->idx, a->out, a->n, a->k, a->h, a->c0, a->c1);
    } else {
        if (a->backward)
            backward_f64(a->W, a->idx, a->gz, a->out, a->n, a->k, a->rows, a->h, a->c0, a->c1);
        else
            forward_f64(a->W, a->idx, a->out, a->n, a->k, a->h, a->c0, a->c1);
    }
    return NULL;
}

/* Split the h columns into `threads` ranges of whole 64-byte lines and run them; 0 on success. */
static int dispatch(Job job, int threads) {
    const int64_t line = 64 / job.dtype, lines = (job.h + line - 1) / line;
    if (threads > lines) threads = (int)lines;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads < 1) threads = 1;
    Job jobs[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int t = 0; t < threads; t++) {
        jobs[t] = job;
        jobs[t].c0 = lines * t / threads * line;
        jobs[t].c1 = t + 1 == threads ? job.h : lines * (t + 1) / threads * line;
    }
    for (int t = 1; t < threads; t++) started[t] = pthread_create(&ids[t], NULL, run_job, &jobs[t]) == 0;
    run_job(&jobs[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(ids[t], NULL);
        else
            run_job(&jobs[t]); /* could not start a thread: do its share here */
    }
    return 0;
}

/* -1: not a float32/float64 element size; -2: a row index outside [0, rows). */
static int check(const int64_t *idx, int64_t count, int64_t rows, int dtype) {
    if (dtype != 4 && dtype != 8) return -1;
    int bad = 0;
    for (int64_t i = 0; i < count; i++) bad |= idx[i] < 0 || idx[i] >= rows;
    return bad ? -2 : 0;
}

/* The exported entry points. dtype is the element size: 4 (float32) or 8 (float64); 0 on success. */
int gb_quadratic_forward(const void *W, const int64_t *idx, void *act, int64_t n, int64_t k, int64_t rows,
                         int64_t h, int dtype, int threads) {
    const int status = check(idx, n * k, rows, dtype);
    if (status) return status;
    Job job = {0, dtype, W, NULL, idx, act, n, k, rows, h, 0, h};
    return dispatch(job, threads);
}

int gb_quadratic_backward(const void *W, const int64_t *idx, const void *gz, void *grad_W, int64_t n, int64_t k,
                          int64_t rows, int64_t h, int dtype, int threads) {
    const int status = check(idx, n * k, rows, dtype);
    if (status) return status;
    Job job = {1, dtype, W, gz, idx, grad_W, n, k, rows, h, 0, h};
    return dispatch(job, threads);
}

/* An importable (empty) module, so that the normal install builds and places it like any extension. */
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "_fused_quadratic",
                                    .m_doc = "Fused passes of the quadratic step; called through ctypes.", .m_size = -1};

PyMODINIT_FUNC PyInit__fused_quadratic(void) { return PyModule_Create(&module); }
