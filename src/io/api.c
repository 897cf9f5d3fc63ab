/*
 * api.c - the public face of the .npy helpers (tools use only vtok.h).
 */
#include "io.h"

int vtok_npy_load(const char *path, float **data, int *n_dims, int64_t shape[8], vtok_status *st)
{
    if (!path || !data || !n_dims || !shape)
        return vt_fail(st, VTOK_EINVAL, "vtok_npy_load: NULL argument");
    return vt_npy_read_f32(path, data, n_dims, shape, st);
}

int vtok_npy_save(const char *path, const float *data, int n_dims, const int64_t *shape,
                  vtok_status *st)
{
    if (!path || !data || n_dims < 0 || n_dims > VT_MAX_DIMS || (n_dims && !shape))
        return vt_fail(st, VTOK_EINVAL, "vtok_npy_save: bad argument");
    return vt_npy_write_f32(path, data, n_dims, shape, st);
}

int vtok_npy_load_i64(const char *path, int64_t **data, int *n_dims, int64_t shape[8],
                      vtok_status *st)
{
    if (!path || !data || !n_dims || !shape)
        return vt_fail(st, VTOK_EINVAL, "vtok_npy_load_i64: NULL argument");
    return vt_npy_read_i64(path, data, n_dims, shape, st);
}

int vtok_npy_save_i64(const char *path, const int64_t *data, int n_dims, const int64_t *shape,
                      vtok_status *st)
{
    if (!path || !data || n_dims < 0 || n_dims > VT_MAX_DIMS || (n_dims && !shape))
        return vt_fail(st, VTOK_EINVAL, "vtok_npy_save_i64: bad argument");
    return vt_npy_write_i64(path, data, n_dims, shape, st);
}

void vtok_free(void *p)
{
    vt_free(p);
}
