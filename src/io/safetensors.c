/*
 * safetensors.c - weight files: one .safetensors file, or shards listed by
 * model.safetensors.index.json, mapped read-only (or read into memory).
 *
 * Layout of a file: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...}, then the
 * data buffer that the offsets index. Tensor data is used in place from the
 * mapping, so opening a model costs one header parse per shard and no copy.
 *
 * Model files come from the internet, so everything in a header is checked
 * before any pointer is formed: header length against the file, dtype names,
 * dims (count, sign, integrality), element count and byte size against
 * overflow, offsets against the data buffer, byte size against the offsets,
 * overlap between tensors, duplicate names within and across shards, and for
 * an index, that each tensor really is in the shard it names. Every failure is
 * one line naming the file and the tensor.
 *
 * Names are looked up by binary search over the tensor table sorted by name
 * (models have up to a few thousand tensors; this is O(log n) with no extra
 * structure to keep in sync).
 *
 * Host byte order: data is little-endian on disk and used in place, so vtok
 * assumes a little-endian host (x86-64, aarch64); a big-endian build stops at
 * compile time below rather than returning byte-swapped weights.
 */
#include "io.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "vtok assumes a little-endian host: safetensors data is used in place"
#endif

/* Real headers are well under 1 MB even for 2000-tensor models; the cap
 * keeps a hostile length from making us parse gigabytes of JSON. */
#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
#define ST_MAX_INDEX  ((size_t)100 * 1000 * 1000)
/* Largest integer a JSON number (a double in cJSON) holds exactly. */
#define ST_MAX_JSON_INT 9007199254740992.0

enum { ST_BORROWED = 0, ST_MAPPED, ST_MALLOCED };

typedef struct st_file {
    char          *path;  /* as used in messages */
    const uint8_t *base;  /* whole file image */
    size_t         size;
    int            kind;  /* ST_BORROWED, ST_MAPPED or ST_MALLOCED */
    char          *names; /* this file's tensor names, NUL-separated */
    void         **owned; /* vt_alloc'ed blocks tensors point into (torch files) */
    int64_t        n_owned;
} st_file;

struct vt_weights {
    char         *path;      /* what the caller opened, for messages */
    st_file      *files;
    int           n_files;
    vt_st_tensor *tensors;   /* sorted by (name, file) after load */
    int64_t       n_tensors;
    float       **cache;     /* per tensor: converted float32 copy or NULL */
};

/* Offsets of one tensor in its file, kept only while checking overlap. */
typedef struct st_range {
    int64_t     begin, end;
    const char *name;
} st_range;

/* ------------------------------------------------------------ helpers -- */

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* "dir" + "/" + "name" in a new malloc'ed string. */
static char *join_path(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static uint64_t read_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* A JSON number that is a non-negative integer exactly representable. */
static int json_nonneg_int(const cJSON *j, int64_t *out)
{
    if (!cJSON_IsNumber(j))
        return 0;
    double d = j->valuedouble;
    if (!(d >= 0.0 && d <= ST_MAX_JSON_INT))
        return 0;
    int64_t v = (int64_t)d;
    if ((double)v != d)
        return 0;
    *out = v;
    return 1;
}

/* "[2, 3, -1]" into buf (always NUL-terminated, truncated if it must be). */
static void fmt_shape(char *buf, size_t cap, int n, const int64_t *shape)
{
    size_t k = 0;
    int r = snprintf(buf, cap, "[");
    k = r > 0 ? (size_t)r : 0;
    for (int i = 0; i < n && k < cap; i++) {
        r = snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
        if (r < 0)
            break;
        k += (size_t)r;
    }
    if (k < cap)
        snprintf(buf + k, cap - k, "]");
}

static int cmp_range(const void *a, const void *b)
{
    const st_range *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

static int cmp_range_name(const void *a, const void *b)
{
    return strcmp(((const st_range *)a)->name, ((const st_range *)b)->name);
}

static int cmp_tensor(const void *a, const void *b)
{
    const vt_st_tensor *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return (x->file > y->file) - (x->file < y->file);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Index of the first tensor named `name`, or -1. */
static int64_t find_index(const vt_weights *w, const char *name)
{
    int64_t lo = 0, hi = w->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (strcmp(w->tensors[mid].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < w->n_tensors && strcmp(w->tensors[lo].name, name) == 0)
        return lo;
    return -1;
}

/* ------------------------------------------------------- file opening -- */

/* Add an empty slot to w->files; the caller fills it. Returns its index or -1. */
static int add_file_slot(vt_weights *w, const char *path)
{
    st_file *nf = realloc(w->files, ((size_t)w->n_files + 1) * sizeof *nf);
    if (!nf)
        return -1;
    w->files = nf;
    st_file *f = &w->files[w->n_files];
    memset(f, 0, sizeof *f);
    f->path = dup_str(path);
    if (!f->path)
        return -1;
    return w->n_files++;
}

/* Map or read the file of slot fi. */
static int load_file_bytes(st_file *f, int use_mmap, vtok_status *st)
{
    if (!use_mmap) {
        char *buf = NULL;
        size_t size = 0;
        int rc = vt_read_file(f->path, SIZE_MAX - 1, &buf, &size, st);
        if (rc)
            return rc;
        f->base = (const uint8_t *)buf;
        f->size = size;
        f->kind = ST_MALLOCED;
        return VTOK_OK;
    }
    int fd = vt_open_regular(f->path, "map", st);
    if (fd < 0)
        return fd;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return vt_fail(st, VTOK_EIO, "cannot stat %s: %s", f->path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return vt_fail(st, VTOK_EIO, "cannot map %s: not a regular file", f->path);
    }
    if (sb.st_size < 8) {
        /* mmap of an empty file fails; report the real problem instead. */
        close(fd);
        return vt_fail(st, VTOK_EFORMAT,
                       "%s: file is shorter than 8 bytes (%lld): not a safetensors file",
                       f->path, (long long)sb.st_size);
    }
    if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return vt_fail(st, VTOK_ELIMIT, "%s: file too large to map", f->path);
    }
    size_t size = (size_t)sb.st_size;
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file alive */
    if (p == MAP_FAILED)
        return vt_fail(st, VTOK_EIO, "cannot mmap %s: %s", f->path, strerror(e));
    f->base = p;
    f->size = size;
    f->kind = ST_MAPPED;
    return VTOK_OK;
}

/* ----------------------------------------------------- header parsing -- */

/* Parse one tensor entry of file f into *t and its offsets into *r. */
static int parse_entry(const st_file *f, const cJSON *e, const char *name, uint64_t data_size,
                       vt_st_tensor *t, st_range *r, vtok_status *st)
{
    const char *fp = f->path;
    if (!cJSON_IsObject(e))
        return vt_fail(st, VTOK_EFORMAT, "%s: tensor '%s': entry is not an object", fp, name);

    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!jd)
        return vt_fail(st, VTOK_EFORMAT, "%s: tensor '%s': missing dtype", fp, name);
    if (!cJSON_IsString(jd) || !jd->valuestring)
        return vt_fail(st, VTOK_EFORMAT, "%s: tensor '%s': dtype is not a string", fp, name);
    int dt = -1;
    for (int i = 0; i < VT_DTYPE_COUNT; i++)
        if (strcmp(jd->valuestring, vt_dtype_name((vt_dtype)i)) == 0)
            dt = i;
    if (dt < 0)
        return vt_fail(st, VTOK_EFORMAT, "%s: tensor '%s': unknown dtype '%.32s'", fp, name,
                       jd->valuestring);

    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!js)
        return vt_fail(st, VTOK_EFORMAT, "%s: tensor '%s': missing shape", fp, name);
    if (!cJSON_IsArray(js))
        return vt_fail(st, VTOK_EFORMAT, "%s: tensor '%s': shape is not an array", fp, name);
    int nd = cJSON_GetArraySize(js);
    if (nd > VT_MAX_DIMS)
        return vt_fail(st, VTOK_EFORMAT, "%s: tensor '%s': shape has %d dims, more than %d", fp,
                       name, nd, VT_MAX_DIMS);
    int64_t numel = 1;
    int i = 0;
    for (const cJSON *d = js->child; d; d = d->next, i++) {
        if (!json_nonneg_int(d, &t->shape[i]))
            return vt_fail(st, VTOK_EFORMAT,
                           "%s: tensor '%s': shape[%d] is not a non-negative integer", fp, name,
                           i);
        if (!vt_mul_ok(numel, t->shape[i], &numel))
            return vt_fail(st, VTOK_EFORMAT, "%s: tensor '%s': element count overflows", fp,
                           name);
    }
    int64_t nbytes;
    if (!vt_mul_ok(numel, (int64_t)vt_dtype_size((vt_dtype)dt), &nbytes))
        return vt_fail(st, VTOK_EFORMAT, "%s: tensor '%s': byte size overflows", fp, name);

    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!jo)
        return vt_fail(st, VTOK_EFORMAT, "%s: tensor '%s': missing data_offsets", fp, name);
    int64_t begin, end;
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 || !json_nonneg_int(jo->child, &begin) ||
        !json_nonneg_int(jo->child->next, &end))
        return vt_fail(st, VTOK_EFORMAT,
                       "%s: tensor '%s': data_offsets is not 2 non-negative integers", fp, name);
    if (begin > end)
        return vt_fail(st, VTOK_EFORMAT,
                       "%s: tensor '%s': data_offsets begin %lld > end %lld", fp, name,
                       (long long)begin, (long long)end);
    if ((uint64_t)end > data_size)
        return vt_fail(st, VTOK_EFORMAT,
                       "%s: tensor '%s': data_offsets end %lld is past the data (%llu bytes; "
                       "file truncated?)", fp, name, (long long)end, (unsigned long long)data_size);
    if (end - begin != nbytes) {
        char sh[160];
        fmt_shape(sh, sizeof sh, nd, t->shape);
        return vt_fail(st, VTOK_EFORMAT,
                       "%s: tensor '%s': dtype/shape size mismatch: %s %s needs %lld bytes, "
                       "data_offsets span %lld", fp, name, vt_dtype_name((vt_dtype)dt), sh,
                       (long long)nbytes, (long long)(end - begin));
    }

    t->name = name;
    t->dtype = (vt_dtype)dt;
    t->n_dims = nd;
    t->numel = numel;
    t->nbytes = (size_t)nbytes;
    r->begin = begin;
    r->end = end;
    r->name = name;
    return VTOK_OK;
}

/* A PyTorch checkpoint (torch.c) as file fi: its tensors join w's table and
 * the blocks they may point into (inflated or materialised) become f's. */
static int parse_torch(vt_weights *w, int fi, vtok_status *st)
{
    st_file *f = &w->files[fi];
    vt_pt_checkpoint c;
    int rc = vt_torch_parse(f->base, f->size, f->path, &c, st);
    if (rc)
        return rc;
    size_t names_len = 1;
    for (int64_t i = 0; i < c.n_tensors; i++)
        names_len += strlen(c.tensors[i].name) + 1;
    f->names = malloc(names_len);
    vt_st_tensor *nt = realloc(w->tensors, (size_t)(w->n_tensors + c.n_tensors + 1) * sizeof *nt);
    if (nt)
        w->tensors = nt;
    if (!f->names || !nt) {
        vt_torch_release(&c);
        return vt_fail(st, VTOK_ENOMEM, "%s: out of memory", f->path);
    }
    char *np = f->names;
    for (int64_t i = 0; i < c.n_tensors; i++) {
        const vt_pt_tensor *s = &c.tensors[i];
        vt_st_tensor *t = &w->tensors[w->n_tensors++];
        size_t len = strlen(s->name) + 1;
        memcpy(np, s->name, len);
        memset(t, 0, sizeof *t);
        t->name = np;
        t->dtype = s->dtype;
        t->n_dims = s->n_dims;
        memcpy(t->shape, s->shape, sizeof t->shape);
        t->numel = s->numel;
        t->data = s->data;
        t->nbytes = s->nbytes;
        t->file = fi;
        np += len;
    }
    f->owned = c.owned;
    f->n_owned = c.n_owned;
    c.owned = NULL;
    c.n_owned = 0;
    vt_torch_release(&c);
    return VTOK_OK;
}

/* Parse the header of file fi and append its tensors to w. */
static int parse_file(vt_weights *w, int fi, vtok_status *st)
{
    st_file *f = &w->files[fi];
    const char *fp = f->path;
    if (!ends_with(fp, ".safetensors") && vt_torch_detect(fp, f->base, f->size))
        return parse_torch(w, fi, st);
    if (f->size < 8)
        return vt_fail(st, VTOK_EFORMAT,
                       "%s: file is shorter than 8 bytes (%zu): not a safetensors file", fp,
                       f->size);
    uint64_t n = read_le64(f->base);
    if (n > (uint64_t)(f->size - 8))
        return vt_fail(st, VTOK_EFORMAT, "%s: header length %llu exceeds file size (%zu bytes)",
                       fp, (unsigned long long)n, f->size);
    if (n > ST_MAX_HEADER)
        return vt_fail(st, VTOK_EFORMAT, "%s: header length %llu exceeds the %llu-byte limit",
                       fp, (unsigned long long)n, (unsigned long long)ST_MAX_HEADER);
    uint64_t data_size = (uint64_t)(f->size - 8) - n;
    const uint8_t *data = f->base + 8 + n;

    /* Parse a NUL-terminated copy: the header need not end in NUL in the
     * file, and a copy keeps any over-read by the JSON parser inside our
     * buffer rather than past the end of the mapping. */
    char *hdr = malloc((size_t)n + 1);
    if (!hdr)
        return vt_fail(st, VTOK_ENOMEM, "%s: out of memory for a %llu-byte header", fp,
                       (unsigned long long)n);
    memcpy(hdr, f->base + 8, (size_t)n);
    hdr[n] = '\0';
    const char *jend = NULL;
    cJSON *root = n ? cJSON_ParseWithLengthOpts(hdr, (size_t)n, &jend, 0) : NULL;
    int rc = VTOK_OK;
    st_range *ranges = NULL;
    if (!root) {
        rc = vt_fail(st, VTOK_EFORMAT, "%s: header is not valid JSON (error near byte %lld)", fp,
                     jend ? (long long)(jend - hdr) : 0LL);
        goto done;
    }
    /* Writers pad the header with spaces to align the data; anything else
     * after the JSON means the length or the JSON is wrong. */
    for (const char *p = jend; p < hdr + n; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            rc = vt_fail(st, VTOK_EFORMAT, "%s: header has trailing bytes after the JSON (at %lld)",
                         fp, (long long)(p - hdr));
            goto done;
        }
    }
    if (!cJSON_IsObject(root)) {
        rc = vt_fail(st, VTOK_EFORMAT, "%s: header is not a JSON object", fp);
        goto done;
    }

    /* One block for all names of this file: the tensors point into it. */
    size_t names_len = 0;
    int64_t count = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!e->string || strcmp(e->string, "__metadata__") == 0)
            continue;
        names_len += strlen(e->string) + 1;
        count++;
    }
    f->names = malloc(names_len ? names_len : 1);
    ranges = malloc((size_t)(count ? count : 1) * sizeof *ranges);
    vt_st_tensor *nt = realloc(w->tensors, (size_t)(w->n_tensors + count + 1) * sizeof *nt);
    if (nt)
        w->tensors = nt;
    if (!f->names || !ranges || !nt) {
        rc = vt_fail(st, VTOK_ENOMEM, "%s: out of memory for %lld tensors", fp, (long long)count);
        goto done;
    }

    char *np = f->names;
    int64_t k = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!e->string || strcmp(e->string, "__metadata__") == 0)
            continue;
        size_t len = strlen(e->string) + 1;
        memcpy(np, e->string, len);
        vt_st_tensor *t = &w->tensors[w->n_tensors];
        memset(t, 0, sizeof *t);
        rc = parse_entry(f, e, np, data_size, t, &ranges[k], st);
        if (rc)
            goto done;
        t->data = data + ranges[k].begin;
        t->file = fi;
        w->n_tensors++;
        np += len;
        k++;
    }

    /* Duplicates first (sorted by name), so that a repeated entry is reported
     * as such rather than as overlapping itself. */
    qsort(ranges, (size_t)count, sizeof *ranges, cmp_range_name);
    for (int64_t i = 1; i < count; i++) {
        if (strcmp(ranges[i - 1].name, ranges[i].name) == 0) {
            rc = vt_fail(st, VTOK_EFORMAT, "%s: duplicate tensor name '%s'", fp, ranges[i].name);
            goto done;
        }
    }

    /* Overlap: sorted by begin, each non-empty range must start at or after
     * the furthest end seen so far. Empty tensors own no bytes, so they may
     * sit anywhere, including on another tensor's offsets. */
    qsort(ranges, (size_t)count, sizeof *ranges, cmp_range);
    int64_t far_end = 0;
    const st_range *far = NULL;
    for (int64_t i = 0; i < count; i++) {
        const st_range *r = &ranges[i];
        if (r->begin == r->end)
            continue;
        if (far && r->begin < far_end) {
            rc = vt_fail(st, VTOK_EFORMAT,
                         "%s: tensors '%s' [%lld, %lld) and '%s' [%lld, %lld) overlap", fp,
                         far->name, (long long)far->begin, (long long)far->end, r->name,
                         (long long)r->begin, (long long)r->end);
            goto done;
        }
        if (r->end > far_end) {
            far_end = r->end;
            far = r;
        }
    }

done:
    free(ranges);
    cJSON_Delete(root);
    free(hdr);
    return rc;
}

/* Sort the table by name, reject duplicates, allocate the cache. */
static int finish_table(vt_weights *w, vtok_status *st)
{
    if (w->n_tensors > 1)
        qsort(w->tensors, (size_t)w->n_tensors, sizeof *w->tensors, cmp_tensor);
    for (int64_t i = 1; i < w->n_tensors; i++) {
        const vt_st_tensor *a = &w->tensors[i - 1], *b = &w->tensors[i];
        if (strcmp(a->name, b->name) != 0)
            continue;
        if (a->file == b->file)
            return vt_fail(st, VTOK_EFORMAT, "%s: duplicate tensor name '%s'",
                           w->files[a->file].path, a->name);
        return vt_fail(st, VTOK_EFORMAT, "tensor '%s' appears in both %s and %s", a->name,
                       w->files[a->file].path, w->files[b->file].path);
    }
    w->cache = calloc((size_t)(w->n_tensors ? w->n_tensors : 1), sizeof *w->cache);
    if (!w->cache)
        return vt_fail(st, VTOK_ENOMEM, "%s: out of memory", w->path);
    return VTOK_OK;
}

static int open_one(vt_weights *w, const char *path, int use_mmap, vtok_status *st)
{
    int fi = add_file_slot(w, path);
    if (fi < 0)
        return vt_fail(st, VTOK_ENOMEM, "out of memory opening %s", path);
    int rc = load_file_bytes(&w->files[fi], use_mmap, st);
    if (rc)
        return rc;
    return parse_file(w, fi, st);
}

/* A shard name from weight_map must be a plain file name in the index's
 * directory: no separators and no "..", so an index cannot reach elsewhere. */
static int shard_name_ok(const char *s)
{
    return s[0] != '\0' && !strchr(s, '/') && !strchr(s, '\\') && !strstr(s, "..");
}

static int open_index(vt_weights *w, const char *index_path, int use_mmap, vtok_status *st)
{
    char *text = NULL;
    size_t len = 0;
    int rc = vt_read_file(index_path, ST_MAX_INDEX, &text, &len, st);
    if (rc)
        return rc;
    cJSON *root = cJSON_ParseWithLength(text, len);
    char *dir = NULL;
    const char **shards = NULL;
    if (!root) {
        rc = vt_fail(st, VTOK_EFORMAT, "%s: not valid JSON", index_path);
        goto done;
    }
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(root) || !wm) {
        rc = vt_fail(st, VTOK_EFORMAT, "%s: no \"weight_map\" object", index_path);
        goto done;
    }
    if (!cJSON_IsObject(wm)) {
        rc = vt_fail(st, VTOK_EFORMAT, "%s: \"weight_map\" is not an object", index_path);
        goto done;
    }
    int n = cJSON_GetArraySize(wm);
    if (n == 0) {
        rc = vt_fail(st, VTOK_EFORMAT, "%s: \"weight_map\" is empty", index_path);
        goto done;
    }
    shards = malloc((size_t)n * sizeof *shards);
    if (!shards) {
        rc = vt_fail(st, VTOK_ENOMEM, "%s: out of memory", index_path);
        goto done;
    }
    int k = 0;
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e) || !e->valuestring) {
            rc = vt_fail(st, VTOK_EFORMAT, "%s: weight_map entry '%s' is not a string",
                         index_path, e->string ? e->string : "?");
            goto done;
        }
        if (!shard_name_ok(e->valuestring)) {
            rc = vt_fail(st, VTOK_EFORMAT,
                         "%s: shard name '%.200s' for tensor '%s' is not a plain file name",
                         index_path, e->valuestring, e->string ? e->string : "?");
            goto done;
        }
        shards[k++] = e->valuestring;
    }
    /* Unique shard names, sorted: the file index of a shard is its rank. */
    qsort(shards, (size_t)k, sizeof *shards, cmp_str);
    int n_shards = 0;
    for (int i = 0; i < k; i++)
        if (i == 0 || strcmp(shards[i], shards[n_shards - 1]) != 0)
            shards[n_shards++] = shards[i];

    const char *slash = strrchr(index_path, '/');
    if (slash) {
        size_t dl = (size_t)(slash - index_path);
        dir = malloc(dl + 2);
        if (dir) {
            memcpy(dir, index_path, dl ? dl : 1); /* "/x.json" keeps "/" */
            dir[dl ? dl : 1] = '\0';
        }
    } else {
        dir = dup_str(".");
    }
    if (!dir) {
        rc = vt_fail(st, VTOK_ENOMEM, "%s: out of memory", index_path);
        goto done;
    }
    for (int i = 0; i < n_shards; i++) {
        char *sp = strcmp(dir, "/") == 0 ? join_path("", shards[i]) : join_path(dir, shards[i]);
        if (!sp) {
            rc = vt_fail(st, VTOK_ENOMEM, "%s: out of memory", index_path);
            goto done;
        }
        rc = open_one(w, sp, use_mmap, st);
        free(sp);
        if (rc)
            goto done;
    }
    rc = finish_table(w, st);
    if (rc)
        goto done;

    /* Each listed tensor must be in the shard the index names for it. */
    for (const cJSON *e = wm->child; e; e = e->next) {
        const char *tn = e->string ? e->string : "";
        const char **hit = bsearch(&e->valuestring, shards, (size_t)n_shards, sizeof *shards,
                                   cmp_str);
        int want = hit ? (int)(hit - shards) : -1;
        int64_t ti = find_index(w, tn);
        int found = 0;
        for (int64_t j = ti; j >= 0 && j < w->n_tensors && strcmp(w->tensors[j].name, tn) == 0;
             j++)
            if (w->tensors[j].file == want)
                found = 1;
        if (!found) {
            rc = vt_fail(st, VTOK_EFORMAT, "%s: tensor '%s' listed in weight_map is not in %s",
                         index_path, tn, want >= 0 ? w->files[want].path : e->valuestring);
            goto done;
        }
    }

done:
    free(dir);
    free(shards);
    cJSON_Delete(root);
    free(text);
    return rc;
}

/* Pick the weights file of a model directory (see io.h). *out is malloc'ed. */
static int resolve_dir(const char *dir, char **out, int *is_index, vtok_status *st)
{
    struct stat sb;
    /* Names that exist count even when they are not regular files: opening
     * them then says so, instead of "no weights found". */
    char *p = join_path(dir, "model.safetensors.index.json");
    if (!p)
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    if (stat(p, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        *out = p;
        *is_index = 1;
        return VTOK_OK;
    }
    free(p);
    p = join_path(dir, "model.safetensors");
    if (!p)
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    if (stat(p, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        *out = p;
        *is_index = 0;
        return VTOK_OK;
    }
    free(p);

    /* HF's legacy single-file name for PyTorch weights */
    p = join_path(dir, "pytorch_model.bin");
    if (!p)
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    int have_bin = stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
    free(p);

    char **found = NULL;
    int n = 0, rc = VTOK_OK;
    /* the only .safetensors file; failing that, the only PyTorch checkpoint
     * (.bin / .pth / .pt / .ckpt: a folder holding a released .pth as is) */
    for (int pass = 0; pass < 2 && rc == VTOK_OK && n == 0; pass++) {
        if (pass == 1 && have_bin) {
            if (!(found = malloc(sizeof *found)) ||
                !(found[0] = join_path(dir, "pytorch_model.bin"))) {
                rc = vt_fail(st, VTOK_ENOMEM, "out of memory");
                break;
            }
            n = 1;
            break;
        }
        DIR *d = opendir(dir);
        if (!d)
            return vt_fail(st, VTOK_EIO, "cannot list %s: %s", dir, strerror(errno));
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            int want = pass == 0 ? ends_with(de->d_name, ".safetensors")
                                 : ends_with(de->d_name, ".pth") || ends_with(de->d_name, ".pt") ||
                                       ends_with(de->d_name, ".bin") ||
                                       ends_with(de->d_name, ".ckpt");
            if (!want || de->d_name[0] == '.')
                continue;
            char *fp = join_path(dir, de->d_name);
            if (!fp) {
                rc = vt_fail(st, VTOK_ENOMEM, "out of memory");
                break;
            }
            if (stat(fp, &sb) != 0 || S_ISDIR(sb.st_mode)) {
                free(fp);
                continue;
            }
            char **nf = realloc(found, ((size_t)n + 1) * sizeof *nf);
            if (!nf) {
                free(fp);
                rc = vt_fail(st, VTOK_ENOMEM, "out of memory");
                break;
            }
            found = nf;
            found[n++] = fp;
        }
        closedir(d);
    }
    if (rc == VTOK_OK && n == 0) {
        rc = vt_fail(st, VTOK_EMISSING,
                     "%s: no model.safetensors.index.json, model.safetensors, other "
                     ".safetensors file or PyTorch checkpoint", dir);
    } else if (rc == VTOK_OK && n > 1) {
        /* Ambiguous: say what is there so the user can pick one. */
        qsort(found, (size_t)n, sizeof *found, cmp_str);
        char list[400];
        size_t k = 0;
        list[0] = '\0';
        for (int i = 0; i < n && k < sizeof list; i++) {
            const char *base = strrchr(found[i], '/');
            int r = snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "",
                             base ? base + 1 : found[i]);
            if (r < 0)
                break;
            k += (size_t)r;
        }
        rc = vt_fail(st, VTOK_EFORMAT,
                     "%s: %d weight files and no model.safetensors.index.json: %s", dir, n,
                     list);
    } else if (rc == VTOK_OK) {
        *out = found[0];
        found[0] = NULL;
        *is_index = 0;
    }
    for (int i = 0; i < n; i++)
        free(found[i]);
    free(found);
    return rc;
}

/* --------------------------------------------------------- public API -- */

static vt_weights *weights_new(const char *path)
{
    vt_weights *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->path = dup_str(path);
    if (!w->path) {
        free(w);
        return NULL;
    }
    return w;
}

int vt_weights_open(const char *path, int use_mmap, vt_weights **out, vtok_status *st)
{
    if (!out)
        return vt_fail(st, VTOK_EINVAL, "vt_weights_open: out is NULL");
    *out = NULL;
    if (!path)
        return vt_fail(st, VTOK_EINVAL, "vt_weights_open: path is NULL");
    struct stat sb;
    if (stat(path, &sb) != 0)
        return vt_fail(st, VTOK_EIO, "cannot open %s: %s", path, strerror(errno));

    char *file = NULL;
    int is_index = 0, rc;
    if (S_ISDIR(sb.st_mode)) {
        rc = resolve_dir(path, &file, &is_index, st);
        if (rc)
            return rc;
    } else {
        file = dup_str(path);
        if (!file)
            return vt_fail(st, VTOK_ENOMEM, "out of memory");
        is_index = ends_with(path, ".json");
    }

    vt_weights *w = weights_new(path);
    if (!w) {
        free(file);
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    }
    if (is_index) {
        rc = open_index(w, file, use_mmap, st);
    } else {
        rc = open_one(w, file, use_mmap, st);
        if (!rc)
            rc = finish_table(w, st);
    }
    free(file);
    if (rc) {
        vt_weights_close(w);
        return rc;
    }
    *out = w;
    return VTOK_OK;
}

int vt_weights_open_mem(const void *buf, size_t size, const char *name, vt_weights **out,
                        vtok_status *st)
{
    if (!out)
        return vt_fail(st, VTOK_EINVAL, "vt_weights_open_mem: out is NULL");
    *out = NULL;
    if (!buf && size)
        return vt_fail(st, VTOK_EINVAL, "vt_weights_open_mem: buf is NULL");
    if (!name)
        name = "<memory>";
    vt_weights *w = weights_new(name);
    int fi = w ? add_file_slot(w, name) : -1;
    if (fi < 0) {
        vt_weights_close(w);
        return vt_fail(st, VTOK_ENOMEM, "out of memory");
    }
    w->files[fi].base = buf;
    w->files[fi].size = size;
    w->files[fi].kind = ST_BORROWED;
    int rc = parse_file(w, fi, st);
    if (!rc)
        rc = finish_table(w, st);
    if (rc) {
        vt_weights_close(w);
        return rc;
    }
    *out = w;
    return VTOK_OK;
}

void vt_weights_close(vt_weights *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n_files; i++) {
        st_file *f = &w->files[i];
        if (f->kind == ST_MAPPED)
            munmap((void *)f->base, f->size);
        else if (f->kind == ST_MALLOCED)
            free((void *)f->base);
        for (int64_t j = 0; j < f->n_owned; j++)
            vt_free(f->owned[j]);
        free(f->owned);
        free(f->names);
        free(f->path);
    }
    if (w->cache)
        for (int64_t i = 0; i < w->n_tensors; i++)
            vt_free(w->cache[i]);
    free(w->cache);
    free(w->files);
    free(w->tensors);
    free(w->path);
    free(w);
}

int64_t vt_weights_count(const vt_weights *w)
{
    return w ? w->n_tensors : 0;
}

const vt_st_tensor *vt_weights_at(const vt_weights *w, int64_t i)
{
    if (!w || i < 0 || i >= w->n_tensors)
        return NULL;
    return &w->tensors[i];
}

const vt_st_tensor *vt_weights_find(const vt_weights *w, const char *name)
{
    if (!w || !name)
        return NULL;
    int64_t i = find_index(w, name);
    return i < 0 ? NULL : &w->tensors[i];
}

/* Single-threaded by contract (see io.h): the cache is filled without locks
 * because only the model loader calls this. */
int vt_weights_f32(vt_weights *w, const char *name, int n_dims, int64_t *shape,
                   const float **out, vtok_status *st)
{
    if (!w || !name || !out || n_dims < 0 || n_dims > VT_MAX_DIMS || (n_dims && !shape))
        return vt_fail(st, VTOK_EINVAL, "vt_weights_f32: bad argument");
    *out = NULL;
    int64_t i = find_index(w, name);
    if (i < 0)
        return vt_fail(st, VTOK_EMISSING, "missing tensor '%s' in %s", name, w->path);
    const vt_st_tensor *t = &w->tensors[i];

    int ok = t->n_dims == n_dims;
    for (int d = 0; ok && d < n_dims; d++)
        ok = shape[d] == -1 || shape[d] == t->shape[d];
    if (!ok) {
        char have[160], want[160];
        fmt_shape(have, sizeof have, t->n_dims, t->shape);
        fmt_shape(want, sizeof want, n_dims, shape);
        return vt_fail(st, VTOK_ESHAPE, "tensor '%s' has shape %s, expected %s", name, have,
                       want);
    }
    if (t->dtype != VT_F32 && t->dtype != VT_F16 && t->dtype != VT_BF16 && t->dtype != VT_F64)
        return vt_fail(st, VTOK_EUNSUPPORTED, "tensor '%s' has dtype %s, cannot use it as F32",
                       name, vt_dtype_name(t->dtype));
    for (int d = 0; d < n_dims; d++)
        shape[d] = t->shape[d];

    if (t->dtype == VT_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) {
        *out = t->data;
        return VTOK_OK;
    }
    if (w->cache[i]) {
        *out = w->cache[i];
        return VTOK_OK;
    }
    int64_t bytes;
    if (!vt_mul_ok(t->numel, (int64_t)sizeof(float), &bytes) || (uint64_t)bytes > SIZE_MAX)
        return vt_fail(st, VTOK_ELIMIT, "tensor '%s' is too large to convert", name);
    float *dst = vt_alloc((size_t)bytes);
    if (!dst)
        return vt_fail(st, VTOK_ENOMEM, "out of memory converting tensor '%s' (%lld bytes)",
                       name, (long long)bytes);
    /* Element loads go through memcpy: the source may be unaligned. */
    const uint8_t *src = t->data;
    switch (t->dtype) {
    case VT_F32:
        memcpy(dst, src, t->nbytes);
        break;
    case VT_F16:
    case VT_BF16:
        for (int64_t k = 0; k < t->numel; k++) {
            uint16_t h;
            memcpy(&h, src + 2 * k, 2);
            dst[k] = t->dtype == VT_F16 ? vt_f16_to_f32(h) : vt_bf16_to_f32(h);
        }
        break;
    default: /* VT_F64: rounds to nearest; out-of-range becomes +-inf (IEEE) */
        for (int64_t k = 0; k < t->numel; k++) {
            double v;
            memcpy(&v, src + 8 * k, 8);
            dst[k] = (float)v;
        }
        break;
    }
    w->cache[i] = dst;
    *out = dst;
    return VTOK_OK;
}

/* ------------------------------------------------------------ release -- */

static void drop_mapped(vt_weights *w, const void *data, size_t bytes)
{
    const uint8_t *p = data;
    for (int f = 0; f < w->n_files; f++) {
        const st_file *sf = &w->files[f];
        if (sf->kind != ST_MAPPED || p < sf->base || p + bytes > sf->base + sf->size)
            continue;
        const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
        uintptr_t b = ((uintptr_t)p + page - 1) / page * page;
        uintptr_t e = ((uintptr_t)p + bytes) / page * page;
        if (e > b)
            madvise((void *)b, e - b, MADV_DONTNEED); /* advice: failure is harmless */
        return;
    }
}

void vt_weights_drop_pages(vt_weights *w, const float *data)
{
    if (!w || !data)
        return;
    for (int64_t i = 0; i < w->n_tensors; i++)
        if (w->tensors[i].data == (const void *)data && w->tensors[i].dtype == VT_F32) {
            drop_mapped(w, data, w->tensors[i].nbytes);
            return;
        }
}

void vt_weights_release(vt_weights *w, const float *data)
{
    if (!w || !data)
        return;
    for (int64_t i = 0; i < w->n_tensors; i++) {
        if (w->cache[i] == data) {
            vt_free(w->cache[i]);
            w->cache[i] = NULL;
            /* the source (F16/BF16 in the file) is no longer needed either */
            drop_mapped(w, w->tensors[i].data, w->tensors[i].nbytes);
            return;
        }
    }
    vt_weights_drop_pages(w, data);
}
