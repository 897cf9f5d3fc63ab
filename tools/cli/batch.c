/*
 * batch.c - `vtok batch`: run an encoder or a recipe over whole image
 * datasets (WebDataset tar shards as img2dataset writes them, folders, file
 * lists), one output set per input shard, resumable, one process per rank.
 *
 * Per shard S (docs/BATCH.md): S.npy (the outputs, a row per sample in
 * sample order), S.keys.txt (the keys, a line each), S.errors.jsonl (every
 * sample that gave no row: key and reason), S_stats.json, and S.done. All are
 * written under temporary names (".S~HOST.PID~.npy", ...), fsynced, renamed,
 * and S.done is created last the same way: a shard counts only when S.done
 * exists, a rerun skips it, and a shard without it is redone whole (a rank
 * removes the temporary files left for its shards when it starts). So a process killed at any point,
 * even with SIGKILL, loses nothing and duplicates nothing once rerun. Every
 * sample key of a shard is in exactly one of S.keys.txt and S.errors.jsonl.
 *
 * Pipeline (one shard at a time): a reader thread walks the input (tar
 * members, or file names) and fills a ring of slots; decoder threads
 * (--workers) take the slots in order and decode + preprocess them in
 * parallel; the main thread takes finished slots strictly in sample order,
 * gathers --batch of them and encodes the batch (the context's own pool,
 * --threads). The ring bounds the samples in flight (and the bytes held), so
 * memory does not grow with the shard.
 *
 * Ranks: shard i of the expanded input list belongs to rank i % N, the rank
 * and N from --shard-index / --num-shards or the launcher's environment
 * (Slurm, Open MPI, PMI, Kubernetes indexed jobs): no coordination is needed,
 * and a rerun with the same arguments gives every rank the same shards.
 * Built with MPI and started by mpirun, rank 0 instead hands out the shards
 * as ranks ask (batch_mpi.c; --schedule static keeps the split above).
 */
#include "batch.h"
#include "batch_input.h"
#include "batch_mpi.h"
#include "batch_out.h"
#include "batch_tar.h"
#include "llm_cli.h"
#include "vtok.h"
#include "outset.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_INPUTS       256
#define MAX_CAPTION      (1 << 20)
#define DEFAULT_EXTS     "jpg;png;jpeg;webp"
#define BYTES_IN_FLIGHT  ((size_t)1 << 30) /* encoded bytes the ring may hold */

enum { OUT_IMAGE_EMBEDS, OUT_POOLER, OUT_EMBEDDINGS, OUT_IDS };
static const char *const out_names[] = {"image_embeds", "pooler", "embeddings", "ids"};

#define die(...) cli_err("vtok batch: ", __VA_ARGS__)

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static const char *g_schedule = "static"; /* how shards reach ranks (stats) */
static volatile sig_atomic_t g_stop; /* SIGINT / SIGTERM: the signal number */
static int g_reader_left;            /* a pipe reader was left running at a stop  */

static void on_signal(int sig)
{
    g_stop = sig;
}

static int abort_cb(void *user)
{
    (void)user;
    return g_stop != 0;
}

/* ------------------------------------------------------------ options -- */

typedef struct {
    const char *model, *recipe, *out, *dtype, *output, *image_key, *caption_key, *progress;
    const char *schedule; /* NULL, "static" or "dynamic" */
    const char *prompt, *llm, *experts, *format; /* recipes that read a question */
    const char *inputs[MAX_INPUTS];
    int         n_inputs;
    int         threads, batch, workers, fp16, exif;
    int         shard_index, num_shards; /* -1: not given */
    int64_t     shard_size, max_image_bytes;
    double      progress_every;
} batch_args;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vtok batch (--model DIR | --recipe NAME|FILE --model DIR) --input SPEC\n"
            "                  --out DIR [options]\n"
            "\n"
            "Encode (or tokenize) every image of a dataset; one output set per input shard:\n"
            "  S.npy (rows in sample order), S.keys.txt, S.errors.jsonl, S_stats.json, S.done;\n"
            "  recipes with a token count per image (llava-next, slime): S.npy holds all\n"
            "  images' rows one after another and S.lengths.npy each image's count\n"
            "Finished shards (S.done) are skipped, so a rerun resumes a killed job.\n"
            "\n"
            "input (--input may repeat; SPEC may hold several, comma-separated):\n"
            "  DIR/{00000..00999}.tar   WebDataset tars (brace ranges keep the zero padding)\n"
            "  pipe:CMD                 a tar read from CMD's stdout (e.g. pipe:curl -s URL)\n"
            "  DIR                      a folder of images (recursive, sorted)\n"
            "  LIST.txt                 image paths (or .tar paths), one per line\n"
            "options:\n"
            "  --output K        model: image_embeds (default with a projection), pooler\n"
            "                    (pooler_output), embeddings (last_hidden_state);\n"
            "                    recipe: embeddings (default), ids (quantising recipes)\n"
            "  --fp16            write float16 (default float32; ids are int64)\n"
            "  --dtype D         f32 | bf16 | int8 compute\n"
            "  --threads N       encoder threads (default: one per CPU)\n"
            "  --workers N       decode / preprocess threads (default: half the CPUs, >= 2)\n"
            "  --batch N         images per encoder call (default 32)\n"
            "  --image-key L     image extensions in order of preference (default %s)\n"
            "  --caption-key E   also write S.captions.jsonl from the members with extension E\n"
            "  --shard-size N    images per shard for folders and lists (default 10000)\n"
            "  --max-image-bytes N  larger image members are recorded as errors (default 32 MiB)\n"
            "  --exif            apply EXIF orientation (HF does not; off by default)\n"
            "  --shard-index I --num-shards N   this rank's part: shards i with i %% N == I;\n"
            "                    default from SLURM_PROCID/SLURM_NTASKS, OMPI_COMM_WORLD_RANK/\n"
            "                    SIZE, PMI_RANK/PMI_SIZE, or JOB_COMPLETION_INDEX with\n"
            "                    --num-shards or VTOK_NUM_SHARDS (Kubernetes indexed jobs)\n"
            "  --schedule static|dynamic  under mpirun with a vtok built with MPI: rank 0\n"
            "                    hands out the shards as ranks ask (dynamic, the default\n"
            "                    there) or the i %% N split above (static)\n"
            "  --prompt Q        the question for recipes that read one, the same for every\n"
            "                    image: slime (with --llm DIR [--format F]: its selector\n"
            "                    scores the prompt's ids), mova (with --experts A,C|names|none\n"
            "                    for a fixed set, or --llm DIR: each image's routing pass,\n"
            "                    one image per run, S.routing.jsonl: key, experts, answer)\n"
            "  --progress bar|json|none   default: bar on a terminal, else JSON lines on stdout\n"
            "  --progress-every S         seconds between JSON progress lines (default 10)\n"
            "See docs/BATCH.md.\n",
            DEFAULT_EXTS);
}

static int parse_int(const char *k, const char *v, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || errno || x < lo || x > hi)
        return die("%s: '%s' must be an integer %lld..%lld", k, v, lo, hi);
    *out = x;
    return 0;
}

static int parse_args(int argc, char **argv, batch_args *a)
{
    a->shard_index = a->num_shards = -1;
    a->batch = 32;
    a->shard_size = 10000;
    a->max_image_bytes = (int64_t)32 << 20;
    a->progress_every = 10;
    a->image_key = DEFAULT_EXTS;
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i];
        if (!strcmp(k, "-h") || !strcmp(k, "--help")) {
            usage(stdout);
            exit(0);
        }
        if (!strcmp(k, "--fp16")) {
            a->fp16 = 1;
            continue;
        }
        if (!strcmp(k, "--exif")) {
            a->exif = 1;
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return die("option %s needs a value", k);
        long long x = 0;
        if (!strcmp(k, "--model")) a->model = v;
        else if (!strcmp(k, "--recipe")) a->recipe = v;
        else if (!strcmp(k, "--out")) a->out = v;
        else if (!strcmp(k, "--dtype")) a->dtype = v;
        else if (!strcmp(k, "--output")) a->output = v;
        else if (!strcmp(k, "--image-key")) a->image_key = v;
        else if (!strcmp(k, "--caption-key")) a->caption_key = v;
        else if (!strcmp(k, "--progress")) a->progress = v;
        else if (!strcmp(k, "--schedule")) a->schedule = v;
        else if (!strcmp(k, "--prompt")) a->prompt = v;
        else if (!strcmp(k, "--llm")) a->llm = v;
        else if (!strcmp(k, "--experts")) a->experts = v;
        else if (!strcmp(k, "--format")) a->format = v;
        else if (!strcmp(k, "--input")) {
            if (a->n_inputs >= MAX_INPUTS)
                return die("more than %d --input options", MAX_INPUTS);
            a->inputs[a->n_inputs++] = v;
        } else if (!strcmp(k, "--progress-every")) {
            char *end;
            a->progress_every = strtod(v, &end);
            if (*end || !(a->progress_every > 0 && a->progress_every < 1e6))
                return die("--progress-every: '%s' must be seconds > 0", v);
        } else if (!strcmp(k, "--threads") || !strcmp(k, "--workers") || !strcmp(k, "--batch")) {
            if (parse_int(k, v, 1, 1024, &x))
                return 1;
            *(!strcmp(k, "--threads") ? &a->threads : !strcmp(k, "--workers") ? &a->workers
                                                                              : &a->batch) = (int)x;
        } else if (!strcmp(k, "--shard-index")) {
            if (parse_int(k, v, 0, INT_MAX - 1, &x))
                return 1;
            a->shard_index = (int)x;
        } else if (!strcmp(k, "--num-shards")) {
            if (parse_int(k, v, 1, INT_MAX, &x))
                return 1;
            a->num_shards = (int)x;
        } else if (!strcmp(k, "--shard-size")) {
            if (parse_int(k, v, 1, (long long)1 << 40, &x))
                return 1;
            a->shard_size = x;
        } else if (!strcmp(k, "--max-image-bytes")) {
            if (parse_int(k, v, 1, (long long)1 << 34, &x))
                return 1;
            a->max_image_bytes = x;
        } else
            return die("unknown option %s (see vtok batch --help)", k);
        i++;
    }
    if (!a->model || !a->out || !a->n_inputs)
        return die("%s", "needs --model DIR (and --recipe NAME for a recipe), --input SPEC and "
                         "--out DIR (see vtok batch --help)");
    if (a->schedule && strcmp(a->schedule, "static") && strcmp(a->schedule, "dynamic"))
        return die("--schedule %s: expected static or dynamic", a->schedule);
    if (a->progress && strcmp(a->progress, "bar") && strcmp(a->progress, "json") &&
        strcmp(a->progress, "none"))
        return die("--progress %s: expected bar, json or none", a->progress);
    /* extensions: lowercase, no dots, ';'-separated */
    for (const char *p = a->image_key; *p; p++)
        if (*p == '.' || *p == '/' || (*p >= 'A' && *p <= 'Z'))
            return die("--image-key %s: lowercase extensions separated by ';' (jpg;png)",
                       a->image_key);
    if (!a->image_key[0] || (a->caption_key && (!a->caption_key[0] || strchr(a->caption_key, ';'))))
        return die("%s", "--image-key / --caption-key: an extension such as jpg or txt");
    if (a->workers <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        a->workers = n > 4 ? (int)(n / 2 > 16 ? 16 : n / 2) : 2;
    }
    return 0;
}

/* Which part of the shard list is ours: 0 or 1 (message printed). */
static int detect_rank(batch_args *a, int *rank, int *size, const char **how)
{
    static const char *const envs[][3] = {
        {"SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "Slurm"},
        {"SLURM_PROCID", "SLURM_NTASKS", "Slurm"},
        {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "Open MPI"},
        {"PMI_RANK", "PMI_SIZE", "PMI"},
    };
    long long r = 0, n = 1;
    if (a->shard_index >= 0) {
        if (a->num_shards < 1)
            return die("%s", "--shard-index needs --num-shards");
        r = a->shard_index;
        n = a->num_shards;
        *how = "--shard-index";
    } else {
        *how = NULL;
        for (size_t i = 0; i < sizeof envs / sizeof envs[0] && !*how; i++) {
            const char *er = getenv(envs[i][0]), *en = getenv(envs[i][1]);
            if (!er || !en || !*er || !*en)
                continue;
            if (parse_int(envs[i][0], er, 0, INT_MAX - 1, &r) ||
                parse_int(envs[i][1], en, 1, INT_MAX, &n))
                return 1;
            *how = envs[i][2];
        }
        const char *jci = getenv("JOB_COMPLETION_INDEX");
        if (!*how && jci && *jci) {
            const char *nv = getenv("VTOK_NUM_SHARDS");
            if (parse_int("JOB_COMPLETION_INDEX", jci, 0, INT_MAX - 1, &r))
                return 1;
            if (a->num_shards >= 1)
                n = a->num_shards;
            else if (!nv || parse_int("VTOK_NUM_SHARDS", nv, 1, INT_MAX, &n))
                return die("%s", "JOB_COMPLETION_INDEX is set (a Kubernetes indexed job): give "
                                 "the job's completions as --num-shards N or VTOK_NUM_SHARDS");
            *how = "Kubernetes";
        }
        if (!*how) {
            if (a->num_shards > 1)
                return die("%s", "--num-shards without --shard-index (and no rank in the "
                                 "environment)");
            *how = "single process";
        }
    }
    if (r >= n)
        return die("rank %lld is not below the number of ranks %lld (%s)", r, n, *how);
    *rank = (int)r;
    *size = (int)n;
    return 0;
}

/* ------------------------------------------------------------- engine -- */

typedef struct {
    vtok_model      *m;
    vtok_ctx        *ctx;
    vtok_processor  *proc;
    vtok_recipe     *r;
    vtok_recipe_ctx *rc;
    vtok_recipe_info ri;
    vtok_model_info  mi;
    vtok_run_params  run;      /* the question and what it conditions (slime, mova) */
    vtok_llm        *llm;
    vtok_llm_ctx    *lctx;     /* mova with --llm: each image's routing pass */
    int              route_each;
    char             route_ans[512]; /* the last image's routing answer (e->w its experts) */
    const char      *run_format;      /* --format, for the routing prompt */
    char             route_err[600];
    int32_t         *text_ids;
    float            w[16];
    int              out;
    int              empty_dims; /* a row's shape when a shard has no rows */
    int64_t          empty_shape[3];
} engine;

static void engine_free(engine *e)
{
    vtok_ctx_free(e->ctx);
    vtok_recipe_ctx_free(e->rc);
    vtok_processor_free(e->proc);
    vtok_model_free(e->m);
    vtok_recipe_free(e->r);
    vtok_llm_ctx_free(e->lctx);
    vtok_llm_free(e->llm);
    free(e->text_ids);
}

/* A recipe that reads a question: one --prompt for every image (the run's
 * params), with the LLM's text ids (slime) or --experts (mova). */
static int engine_question(engine *e, const batch_args *a, int dtype)
{
    const int64_t n_exp = vtok_recipe_n_experts(e->r);
    e->run = vtok_run_default_params();
    if (!e->ri.needs_text && !n_exp) {
        if (a->prompt || a->llm || a->experts || a->format)
            return die("recipe %s does not read a question: --prompt / --llm / --experts / "
                       "--format are for slime and mova", e->ri.name);
        return 0;
    }
    if (!a->prompt)
        return die("recipe %s reads a question: give --prompt Q (the same for every image)",
                   e->ri.name);
    e->run.prompt = a->prompt;
    if (n_exp) {
        if (!a->experts && !a->llm)
            return die("recipe %s routes experts by an LLM's answer: give --llm DIR (each "
                       "image's routing pass) or --experts A,C (a fixed set)", e->ri.name);
        if (a->experts && a->llm)
            return die("%s", "--experts and --llm: one or the other (a fixed set, or the "
                             "LLM's routing of each image)");
        if (n_exp > 16)
            return die("recipe %s: more than 16 experts", e->ri.name);
        if (a->experts && cli_parse_experts(e->r, a->experts, e->w, n_exp))
            return 1;
        e->run.cond = e->w;
        e->run.n_cond = n_exp;
        e->route_each = a->llm != NULL; /* one image per run: its routing, then its tokens */
    } else if (a->experts) {
        return die("--experts: recipe %s has no experts to route", e->ri.name);
    } else if (!a->llm) {
        return die("recipe %s selects tokens by the prompt's ids: give --llm DIR", e->ri.name);
    }
    if (!a->llm)
        return 0;
    vtok_status st = {0};
    vtok_model_params mp = vtok_model_default_params();
    mp.dtype = dtype;
    mp.n_threads = a->threads;
    if (!(e->llm = vtok_llm_load(a->llm, &mp, &st)))
        return die("%s", st.msg);
    if (e->route_each) {
        vtok_ctx_params cp = vtok_ctx_default_params();
        cp.n_threads = a->threads;
        if (!(e->lctx = vtok_llm_ctx_new(e->llm, 0, &cp, &st)))
            return die("%s", st.msg);
        e->run_format = a->format;
        return 0;
    }
    /* slime: one image's prompt; under LLaVA's chunk rule the text ids of a
     * batch's prompt (one placeholder per image) are the same */
    int64_t n = 0;
    if (cli_text_ids(e->llm, &e->ri, 1, a->prompt, a->format, &e->text_ids, &n))
        return 1;
    e->run.llm = e->llm;
    e->run.text_ids = e->text_ids;
    e->run.n_text_ids = n;
    return 0;
}

static int engine_load(engine *e, const batch_args *a)
{
    vtok_status st = {0};
    int dtype = VTOK_DTYPE_F32;
    if (a->dtype && ((dtype = vtok_dtype_from_name(a->dtype)) < 0 || dtype == VTOK_DTYPE_Q4))
        return die("--dtype %s: expected f32, bf16 or int8", a->dtype);
    vtok_ctx_params cp = vtok_ctx_default_params();
    cp.n_threads = a->threads;
    cp.abort_cb = abort_cb;
    if (a->recipe) {
        vtok_recipe_params rp = vtok_recipe_default_params();
        rp.dtype = dtype;
        rp.n_threads = a->threads;
        if (!(e->r = vtok_recipe_load(a->recipe, a->model, &rp, &st)))
            return die("%s", st.msg[0] ? st.msg : vtok_strerror(st.code));
        vtok_recipe_get_info(e->r, &e->ri);
        if (engine_question(e, a, dtype))
            return 1;
        e->out = a->output ? -1 : e->ri.ids_per_image ? OUT_IDS : OUT_EMBEDDINGS;
        if (a->output && !strcmp(a->output, "embeddings"))
            e->out = OUT_EMBEDDINGS;
        else if (a->output && !strcmp(a->output, "ids"))
            e->out = OUT_IDS;
        if (e->out < 0)
            return die("--output %s: a recipe writes embeddings or ids", a->output);
        if (e->out == OUT_IDS && !e->ri.ids_per_image)
            return die("--output ids: recipe %s gives embeddings, not discrete ids", e->ri.name);
        if (e->out == OUT_IDS) {
            e->empty_dims = 1;
            e->empty_shape[0] = e->ri.ids_per_image;
        } else if (e->ri.ragged) { /* rows of all images, one after another */
            e->empty_dims = 1;
            e->empty_shape[0] = e->ri.d_out;
        } else {
            e->empty_dims = 2;
            e->empty_shape[0] = e->ri.tokens_per_image;
            e->empty_shape[1] = e->ri.d_out;
        }
        if (!(e->rc = vtok_recipe_ctx_new(e->r, &cp, &st)))
            return die("%s", st.msg);
        return 0;
    }
    if (a->prompt || a->llm || a->experts || a->format)
        return die("%s", "--prompt / --llm / --experts / --format are for recipes that read a "
                         "question (--recipe slime, mova)");
    vtok_model_params mp = vtok_model_default_params();
    mp.dtype = dtype;
    mp.n_threads = a->threads;
    if (!(e->m = vtok_model_load(a->model, &mp, &st)))
        return die("%s", st.msg[0] ? st.msg : vtok_strerror(st.code));
    if (!(e->proc = vtok_processor_load(a->model, &st)))
        return die("%s", st.msg);
    vtok_model_get_info(e->m, &e->mi);
    if (!a->output)
        e->out = e->mi.projection_dim ? OUT_IMAGE_EMBEDS
                 : e->mi.has_pooler   ? OUT_POOLER
                                      : OUT_EMBEDDINGS;
    else if (!strcmp(a->output, "image_embeds"))
        e->out = OUT_IMAGE_EMBEDS;
    else if (!strcmp(a->output, "pooler"))
        e->out = OUT_POOLER;
    else if (!strcmp(a->output, "embeddings"))
        e->out = OUT_EMBEDDINGS;
    else
        return die("--output %s: a model writes image_embeds, pooler or embeddings", a->output);
    if (e->out == OUT_IMAGE_EMBEDS && !e->mi.projection_dim)
        return die("--output image_embeds: %s has no image projection", a->model);
    if (e->out == OUT_POOLER && !e->mi.has_pooler)
        return die("--output pooler: %s has no pooler_output", a->model);
    if (e->out == OUT_EMBEDDINGS) {
        int64_t side = e->mi.patch_size ? e->mi.image_size / e->mi.patch_size : 0;
        e->empty_dims = 2;
        e->empty_shape[0] = e->mi.n_prefix_tokens + side * side;
        e->empty_shape[1] = e->mi.hidden_size;
    } else {
        e->empty_dims = 1;
        e->empty_shape[0] = e->out == OUT_POOLER ? e->mi.hidden_size : e->mi.projection_dim;
    }
    if (!(e->ctx = vtok_ctx_new(e->m, &cp, &st)))
        return die("%s", st.msg);
    return 0;
}

/* ---------------------------------------------------------- pipeline -- */

typedef struct {
    char          *key;
    unsigned char *data;      /* tar: the image member's bytes           */
    size_t         size;
    char          *path;      /* folder / list: the file to load          */
    char          *caption;   /* --caption-key member's text, or NULL     */
    size_t         caption_len;
    char          *error;     /* why this sample gives no row, or NULL    */
    vtok_image     img;       /* recipe: the decoded image                */
    float         *px;        /* model: pixel_values [3, h, w]            */
    int64_t        h, w;
    int            ready;     /* decoded (or failed): the main thread's   */
} slot;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t  cv_space, cv_work, cv_done;
    slot           *slots;
    int64_t         W;
    int64_t         n_read, n_claim, n_consumed;
    size_t          bytes;        /* encoded bytes held by unconsumed slots */
    int             eof, stop;
    /* reader results (read by the main thread after joining it) */
    char            input_err[512]; /* the archive is malformed / truncated: recorded     */
    char            fatal[512];     /* the input could not be read: the shard is not done */
    uint64_t        pos, total;     /* bytes read / size of the input (0: unknown)        */
    /* inputs */
    const bs_shard *shard;
    const batch_args *a;
    const engine   *e;
} pipeline;

static void slot_clear(slot *s)
{
    free(s->key);
    free(s->data);
    free(s->path);
    free(s->caption);
    free(s->error);
    vtok_image_free(&s->img);
    free(s->px);
    memset(s, 0, sizeof *s);
}

static char *str_dup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static char *fmt_dup(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return str_dup(buf, strlen(buf));
}

/* Hand a filled slot to the decoders; waits for room. 0, or -1 when stopping. */
static int push_slot(pipeline *p, slot *s)
{
    pthread_mutex_lock(&p->mu);
    while (!p->stop && !g_stop &&
           (p->n_read - p->n_consumed >= p->W ||
            (p->bytes > BYTES_IN_FLIGHT && p->n_read > p->n_consumed)))
        pthread_cond_wait(&p->cv_space, &p->mu);
    if (p->stop || g_stop) {
        pthread_mutex_unlock(&p->mu);
        slot_clear(s);
        return -1;
    }
    slot *dst = &p->slots[p->n_read % p->W];
    *dst = *s;
    dst->ready = 0;
    p->bytes += s->size;
    p->n_read++;
    pthread_cond_signal(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    memset(s, 0, sizeof *s);
    return 0;
}

/* WebDataset's rule for a member name (webdataset/tariterators.py
 * base_plus_ext): the key is the path up to the first dot of the last
 * component, the extension the rest, lower-cased. 0 if the name has none. */
static int split_key(const char *name, size_t *key_len, const char **ext)
{
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    const char *dot = strchr(base, '.');
    if (!dot || dot == base || !dot[1])
        return 0;
    *key_len = (size_t)(dot - name);
    *ext = dot + 1;
    return 1;
}

/* Position of ext in the preference list exts, or -1. */
static int ext_rank(const char *ext, const char *exts)
{
    size_t n = strlen(ext);
    int r = 0;
    for (const char *p = exts; *p; r++) {
        const char *e = strchr(p, ';');
        size_t k = e ? (size_t)(e - p) : strlen(p);
        if (k == n && !strncasecmp(ext, p, n))
            return r;
        if (!e)
            break;
        p = e + 1;
    }
    return -1;
}

/* The sample being gathered from consecutive members with one key. */
typedef struct {
    slot   s;
    int    have, best;       /* a key; the preference rank of the image held (-1: none) */
    char   others[256];      /* other extensions seen, for the "no image" reason         */
    char  *problem;          /* an image member that could not be taken                 */
} sample;

static int finish_sample(pipeline *p, sample *cur)
{
    if (!cur->have)
        return 0;
    if (cur->best < 0 && !cur->s.error)
        cur->s.error = cur->problem ? cur->problem
                                    : fmt_dup("no image member (%s; members: %s)",
                                              p->a->image_key,
                                              cur->others[0] ? cur->others : "none");
    else
        free(cur->problem);
    cur->problem = NULL;
    int e = push_slot(p, &cur->s);
    memset(cur, 0, sizeof *cur);
    return e;
}

static void read_tar(pipeline *p, FILE *f)
{
    bt_reader r;
    bt_member m;
    bt_init(&r, f);
    sample cur = {0};
    int k, in_data = 0; /* a failure inside a member's data breaks the current sample */
    const char *exts = p->a->image_key, *cap = p->a->caption_key;
    while (!p->stop && !g_stop && (k = bt_next(&r, &m)) == 1) {
        p->pos = r.offset;
        size_t kl;
        const char *ext;
        if (!split_key(m.name, &kl, &ext)) { /* WebDataset skips these too */
            if (bt_skip_data(&r, &m))
                break;
            continue;
        }
        if (!cur.have || strlen(cur.s.key) != kl || strncmp(cur.s.key, m.name, kl)) {
            if (finish_sample(p, &cur))
                break;
            cur.have = 1;
            cur.best = -1;
            if (!(cur.s.key = str_dup(m.name, kl))) {
                snprintf(p->fatal, sizeof p->fatal, "out of memory");
                break;
            }
            if (memchr(cur.s.key, '\n', kl) || memchr(cur.s.key, '\r', kl))
                cur.s.error = fmt_dup("key holds a line break");
        }
        int rank = ext_rank(ext, exts);
        int take_img = rank >= 0 && (cur.best < 0 || rank < cur.best);
        int take_cap = cap && !strcasecmp(ext, cap) && m.size <= MAX_CAPTION;
        if (rank < 0 && !strstr(cur.others, ext) &&
            strlen(cur.others) + strlen(ext) + 3 < sizeof cur.others)
            snprintf(cur.others + strlen(cur.others), sizeof cur.others - strlen(cur.others),
                     "%s%s", cur.others[0] ? ", " : "", ext);
        if (take_img && m.size > p->a->max_image_bytes) {
            free(cur.problem);
            cur.problem = fmt_dup("image member %s of %lld bytes is over "
                                  "--max-image-bytes %lld", ext, (long long)m.size,
                                  (long long)p->a->max_image_bytes);
            take_img = 0;
        }
        in_data = 1;
        if (!take_img && !take_cap) {
            if (bt_skip_data(&r, &m))
                break;
            in_data = 0;
            continue;
        }
        unsigned char *buf = malloc((size_t)m.size + 1);
        if (!buf) {
            snprintf(p->fatal, sizeof p->fatal, "out of memory reading %.400s", m.name);
            break;
        }
        if (bt_read_data(&r, &m, buf)) {
            free(buf);
            break;
        }
        in_data = 0;
        buf[m.size] = '\0';
        if (take_img) {
            free(cur.s.data);
            cur.s.data = buf;
            cur.s.size = (size_t)m.size;
            cur.best = rank;
            free(cur.problem);
            cur.problem = NULL;
        } else {
            free(cur.s.caption);
            cur.s.caption = (char *)buf;
            cur.s.caption_len = (size_t)m.size;
        }
    }
    p->pos = r.offset;
    if (r.err[0]) {
        /* the sample being read may be incomplete: recorded, not encoded */
        snprintf(p->input_err, sizeof p->input_err, "%s", r.err);
        if (cur.have && !cur.s.error && in_data)
            cur.s.error = fmt_dup("archive ended or broke inside this sample: %s", r.err);
    }
    if (!p->stop && !g_stop)
        finish_sample(p, &cur);
    slot_clear(&cur.s);
    free(cur.problem);
    bt_release(&r);
}

static void *reader_main(void *arg)
{
    pipeline *p = arg;
    const bs_shard *sh = p->shard;
    if (sh->kind == BS_FILES) {
        const bs_files *fs = sh->files;
        for (int64_t i = sh->first; i < sh->first + sh->count && !p->stop && !g_stop; i++) {
            const char *key = fs->keys[i];
            slot s = {0};
            size_t n = strlen(key) + strlen(fs->base) + 1;
            s.key = str_dup(key, strlen(key));
            s.path = malloc(n);
            if (!s.key || !s.path) {
                slot_clear(&s);
                snprintf(p->fatal, sizeof p->fatal, "out of memory");
                break;
            }
            snprintf(s.path, n, "%s%s", key[0] == '/' ? "" : fs->base, key);
            if (strchr(key, '\n') || strchr(key, '\r'))
                s.error = fmt_dup("key holds a line break");
            if (push_slot(p, &s))
                break;
            p->pos = (uint64_t)(i + 1 - sh->first);
        }
    } else if (sh->kind == BS_TAR) {
        struct stat sb;
        FILE *f = NULL;
        if (stat(sh->source, &sb) != 0 || !S_ISREG(sb.st_mode) || !(f = fopen(sh->source, "rb")))
            snprintf(p->fatal, sizeof p->fatal, "cannot read %s: %s", sh->source,
                     errno ? strerror(errno) : "not a regular file");
        else {
            p->total = (uint64_t)sb.st_size;
            read_tar(p, f);
            if (ferror(f) && !p->input_err[0])
                snprintf(p->fatal, sizeof p->fatal, "read error on %s", sh->source);
            fclose(f);
        }
    } else {
        fflush(NULL);
        FILE *f = popen(sh->source, "r");
        if (!f)
            snprintf(p->fatal, sizeof p->fatal, "cannot run '%s': %s", sh->source,
                     strerror(errno));
        else {
            read_tar(p, f);
            /* read the rest (tar's record padding) so the command ends by itself */
            char buf[16384];
            while (!p->stop && !g_stop && fread(buf, 1, sizeof buf, f) > 0) {
            }
            int st = pclose(f);
            if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
                snprintf(p->fatal, sizeof p->fatal, "pipe '%s' %s %d: the shard is not "
                         "marked done (rerun to retry)", sh->source,
                         st != -1 && WIFSIGNALED(st) ? "was killed by signal" : "exited with",
                         st == -1 ? -1 : WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        }
    }
    pthread_mutex_lock(&p->mu);
    p->eof = 1;
    pthread_cond_broadcast(&p->cv_work);
    pthread_cond_broadcast(&p->cv_done);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void decode_slot(const pipeline *p, slot *s)
{
    if (s->error)
        return;
    vtok_status st = {0};
    vtok_image_params ip = vtok_image_default_params();
    ip.exif_orientation = p->a->exif;
    int rc = s->path ? vtok_image_load(s->path, &ip, &s->img, &st)
                     : vtok_image_decode(s->data, s->size, &ip, &s->img, &st);
    free(s->data);
    s->data = NULL;
    if (rc) {
        s->error = fmt_dup("%s", st.msg[0] ? st.msg : vtok_strerror(rc));
        return;
    }
    if (!p->e->proc) /* a recipe preprocesses inside its run */
        return;
    if (vtok_processor_output_size(p->e->proc, s->img.width, s->img.height, &s->h, &s->w, &st) ||
        !(s->px = malloc((size_t)(3 * s->h * s->w) * sizeof(float))) ||
        vtok_preprocess(p->e->proc, &s->img, s->px, 3 * s->h * s->w, &st))
        s->error = fmt_dup("preprocess: %s", st.msg[0] ? st.msg : "out of memory");
    vtok_image_free(&s->img);
}

static void *worker_main(void *arg)
{
    pipeline *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && !g_stop && p->n_claim == p->n_read && !p->eof)
            pthread_cond_wait(&p->cv_work, &p->mu);
        if (p->stop || g_stop || p->n_claim == p->n_read)
            break;
        slot *s = &p->slots[p->n_claim++ % p->W];
        size_t sz = s->size;
        pthread_mutex_unlock(&p->mu);
        decode_slot(p, s);
        pthread_mutex_lock(&p->mu);
        s->ready = 1;
        p->bytes -= sz;
        s->size = 0;
        pthread_cond_broadcast(&p->cv_done);
        pthread_cond_broadcast(&p->cv_space);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ------------------------------------------------------------ outputs -- */

typedef struct {
    char    host[64];
    char    path[8][4600];  /* temp paths: npy keys errors captions lengths routing stats done */
    char    final[8][4600];
    bo_npy  npy;
    bo_npy  lens;   /* ragged recipes: each sample's row count */
    int     ragged;
    FILE   *keys, *errors, *captions, *routing;
    int64_t count, failed;
} shard_out;

enum { F_NPY, F_KEYS, F_ERRORS, F_CAPTIONS, F_LENGTHS, F_ROUTING, F_STATS, F_DONE };
static const char *const suffix[] = {".npy", ".keys.txt", ".errors.jsonl", ".captions.jsonl",
                                     ".lengths.npy", ".routing.jsonl", "_stats.json", ".done"};

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Remove the temporary files earlier processes left for this rank's shards
 * (".NAME~HOST.PID~SUFFIX": '~' never occurs in a shard name), in one pass
 * over the folder: such a shard has no done marker and is redone whole. */
static void remove_stale_temps(const char *dir, const bs_plan *plan, int rank, int size)
{
    int64_t n = (plan->n - rank + size - 1) / size, k = 0;
    char **ours = malloc((size_t)(n > 0 ? n : 1) * sizeof *ours);
    DIR *d = ours ? opendir(dir) : NULL;
    if (!d) {
        free(ours);
        return;
    }
    for (int64_t i = rank; i < plan->n; i += size)
        ours[k++] = plan->shards[i].name;
    qsort(ours, (size_t)k, sizeof *ours, cmp_name);
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *tilde = de->d_name[0] == '.' ? strchr(de->d_name, '~') : NULL;
        if (!tilde || tilde == de->d_name + 1 || (size_t)(tilde - de->d_name) > 300)
            continue;
        char name[320];
        memcpy(name, de->d_name + 1, (size_t)(tilde - de->d_name - 1));
        name[tilde - de->d_name - 1] = '\0';
        const char *key = name;
        char p[4600];
        if (bsearch(&key, ours, (size_t)k, sizeof *ours, cmp_name) &&
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name) < (int)sizeof p)
            unlink(p);
    }
    closedir(d);
    free(ours);
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static FILE *open_excl(const char *path)
{
    FILE *f = fopen(path, "wx");
    return f;
}

static void out_abandon(shard_out *o)
{
    bo_npy_abandon(&o->npy);
    if (o->ragged)
        bo_npy_abandon(&o->lens);
    FILE *fs[4] = {o->keys, o->errors, o->captions, o->routing};
    for (int i = 0; i < 4; i++)
        if (fs[i])
            fclose(fs[i]);
    o->keys = o->errors = o->captions = o->routing = NULL;
    for (int i = 0; i <= F_DONE; i++)
        if (o->path[i][0])
            unlink(o->path[i]);
}

static int out_open(shard_out *o, const batch_args *a, const engine *e, const char *name)
{
    memset(o, 0, sizeof *o);
    o->ragged = e->rc && e->out == OUT_EMBEDDINGS && e->ri.ragged;
    if (gethostname(o->host, sizeof o->host - 1) != 0)
        snprintf(o->host, sizeof o->host, "host");
    for (char *c = o->host; *c; c++)
        if (*c == '/' || *c == '~' || *c == '.')
            *c = '_';
    for (int i = 0; i <= F_DONE; i++) {
        if ((i == F_CAPTIONS && !a->caption_key) || (i == F_LENGTHS && !o->ragged) ||
            (i == F_ROUTING && !e->route_each))
            continue;
        if (snprintf(o->path[i], sizeof o->path[i], "%s/.%s~%s.%ld~%s", a->out, name, o->host,
                     (long)getpid(), suffix[i]) >= (int)sizeof o->path[i] ||
            snprintf(o->final[i], sizeof o->final[i], "%s/%s%s", a->out, name, suffix[i]) >=
                (int)sizeof o->final[i])
            return die("output path too long: %s/%s", a->out, name);
    }
    bo_dtype dt = e->out == OUT_IDS ? BO_I64 : a->fp16 ? BO_F16 : BO_F32;
    if (bo_npy_open(&o->npy, o->path[F_NPY], dt) ||
        !(o->keys = open_excl(o->path[F_KEYS])) || !(o->errors = open_excl(o->path[F_ERRORS])) ||
        (a->caption_key && !(o->captions = open_excl(o->path[F_CAPTIONS]))) ||
        (o->ragged && bo_npy_open(&o->lens, o->path[F_LENGTHS], BO_I64)) ||
        (e->route_each && !(o->routing = open_excl(o->path[F_ROUTING])))) {
        int err = errno;
        out_abandon(o);
        return die("cannot write in %s: %s", a->out, strerror(err));
    }
    if (o->ragged)
        bo_npy_set_row(&o->lens, 0, NULL); /* a count per sample: shape [samples] */
    return 0;
}

static void write_error(shard_out *o, const char *key, const char *reason)
{
    fputs("{\"key\": ", o->errors);
    if (key)
        bo_json_str(o->errors, key, strlen(key));
    else
        fputs("null", o->errors);
    fputs(", \"reason\": ", o->errors);
    bo_json_str(o->errors, reason, strlen(reason));
    fputs("}\n", o->errors);
    if (key)
        o->failed++;
}

/* ------------------------------------------------------------ encoder -- */

typedef struct {
    int64_t     n, cap;
    slot       *items;     /* moved out of the ring: key, caption, px or img */
    float      *px;        /* model: [n, 3, h, w]                            */
    size_t      px_cap;
    vtok_image *imgs;      /* recipe                                         */
} pending;

/* Rows of the last successful run: data and per-row shape. */
static int get_rows(engine *e, int64_t n, const void **data, int *dims, int64_t *shape)
{
    vtok_view v;
    if (e->rc && e->out == OUT_IDS) {
        const int64_t *ids;
        int64_t ni, per;
        if (vtok_recipe_get_ids(e->rc, &ids, &ni, &per) || ni != n)
            return -1;
        *data = ids;
        *dims = 1;
        shape[0] = per;
        return 0;
    }
    if (e->rc) {
        if (vtok_recipe_get_output(e->rc, &v) || v.n_dims < 2 || v.ne[0] != n)
            return -1;
    } else {
        vtok_output w = e->out == OUT_IMAGE_EMBEDS ? VTOK_OUT_IMAGE_EMBEDS
                        : e->out == OUT_POOLER     ? VTOK_OUT_POOLER
                                                   : VTOK_OUT_LAST_HIDDEN;
        if (vtok_get_output(e->ctx, w, 0, &v) || v.ne[0] != n)
            return -1;
    }
    *data = v.data;
    *dims = v.n_dims - 1;
    for (int i = 1; i < v.n_dims; i++)
        shape[i - 1] = v.ne[i];
    return 0;
}

static int run_engine(engine *e, pending *pd, int64_t from, int64_t n, const char **msg)
{
    int rc;
    if (e->rc && e->route_each) { /* n == 1: the image's routing pass, then its tokens */
        vtok_status st = {0};
        vtok_routing rt;
        const int64_t n_exp = vtok_recipe_n_experts(e->r);
        rc = vtok_recipe_route(e->rc, e->lctx, pd->imgs + from, n, NULL, e->run.prompt,
                               e->run_format, e->w, n_exp, &rt, &st);
        if (rc) {
            snprintf(e->route_err, sizeof e->route_err, "routing: %s", st.msg);
            *msg = e->route_err;
            return rc;
        }
        snprintf(e->route_ans, sizeof e->route_ans, "%s", rt.answer); /* e->w: its experts */
        vtok_routing_free(&rt);
        vtok_run_params rp = e->run;
        rp.same_images = 1; /* the routing pass ran the base encoder on this image */
        rc = vtok_recipe_run_images(e->rc, pd->imgs + from, n, &rp);
        *msg = vtok_recipe_ctx_errmsg(e->rc);
    } else if (e->rc) {
        rc = vtok_recipe_run_images(e->rc, pd->imgs + from, n, &e->run);
        *msg = vtok_recipe_ctx_errmsg(e->rc);
    } else {
        const slot *s = &pd->items[from];
        rc = vtok_encode(e->ctx, pd->px + (size_t)from * (size_t)(3 * s->h * s->w), n, 3, s->h,
                         s->w, NULL);
        *msg = vtok_ctx_errmsg(e->ctx);
    }
    return rc;
}

/* Write rows [from, from + n) of the pending batch from the engine's last
 * run (or as errors when the rows do not fit the shard's shape). */
static int emit_rows(engine *e, pending *pd, int64_t from, int64_t n, shard_out *o)
{
    const void *data;
    int dims;
    int64_t shape[4];
    if (o->ragged) { /* each image's [T_i, d] rows, then T_i in S.lengths.npy */
        vtok_view v;
        for (int64_t i = 0; i < n; i++)
            if (vtok_recipe_get_image_output(e->rc, i, &v) || v.n_dims != 2 ||
                v.ne[1] != e->ri.d_out) {
                for (int64_t k = 0; k < n; k++)
                    write_error(o, pd->items[from + k].key, "no output from the run");
                return 0;
            }
        if (o->npy.row_dims == 0)
            bo_npy_set_row(&o->npy, 1, &e->ri.d_out);
        for (int64_t i = 0; i < n; i++) {
            vtok_recipe_get_image_output(e->rc, i, &v);
            const int64_t t = v.ne[0];
            if (bo_npy_append(&o->npy, v.data, t) || bo_npy_append(&o->lens, &t, 1))
                return die("cannot write %s: %s", o->path[F_NPY], strerror(errno));
        }
        data = NULL;
        dims = -1;
    } else if (get_rows(e, n, &data, &dims, shape)) {
        for (int64_t i = 0; i < n; i++)
            write_error(o, pd->items[from + i].key, "no output from the run");
        return 0;
    }
    if (dims >= 0 && o->npy.row_dims == 0)
        bo_npy_set_row(&o->npy, dims, shape);
    int same = dims < 0 || dims == o->npy.row_dims;
    for (int i = 0; same && i < dims; i++)
        same = shape[i] == o->npy.row_shape[i];
    if (!same) {
        char why[160];
        snprintf(why, sizeof why, "output row of %d dims [%lld, ...] differs from the shard's "
                 "rows", dims, (long long)shape[0]);
        for (int64_t i = 0; i < n; i++)
            write_error(o, pd->items[from + i].key, why);
        return 0;
    }
    if (dims >= 0 && bo_npy_append(&o->npy, data, n))
        return die("cannot write %s: %s", o->path[F_NPY], strerror(errno));
    for (int64_t i = 0; i < n; i++) {
        const slot *s = &pd->items[from + i];
        fputs(s->key, o->keys);
        fputc('\n', o->keys);
        if (o->captions) {
            fputs("{\"key\": ", o->captions);
            bo_json_str(o->captions, s->key, strlen(s->key));
            fputs(", \"caption\": ", o->captions);
            if (s->caption)
                bo_json_str(o->captions, s->caption, s->caption_len);
            else
                fputs("null", o->captions);
            fputs("}\n", o->captions);
        }
        if (o->routing) { /* route_each runs one image at a time: this one's */
            fputs("{\"key\": ", o->routing);
            bo_json_str(o->routing, s->key, strlen(s->key));
            fputs(", \"experts\": [", o->routing);
            for (int64_t k = 0, m = 0; k < vtok_recipe_n_experts(e->r); k++)
                if (e->w[k] != 0) {
                    const char *name = vtok_recipe_expert_name(e->r, k);
                    fputs(m++ ? ", " : "", o->routing);
                    bo_json_str(o->routing, name, strlen(name));
                }
            fputs("], \"answer\": ", o->routing);
            bo_json_str(o->routing, e->route_ans, strlen(e->route_ans));
            fputs("}\n", o->routing);
        }
    }
    o->count += n;
    return 0;
}

/* Encode the pending batch; a failing batch is retried one image at a time
 * so that only the images that fail are recorded. 0, or 1 (fatal). */
static int flush(engine *e, pending *pd, shard_out *o)
{
    if (pd->n == 0)
        return 0;
    const char *msg = "";
    int rc = run_engine(e, pd, 0, pd->n, &msg);
    if (rc == 0) {
        if (emit_rows(e, pd, 0, pd->n, o))
            return 1;
    } else if (rc == VTOK_EABORTED || g_stop) {
        return 1;
    } else {
        for (int64_t i = 0; i < pd->n; i++) {
            if (pd->n > 1)
                rc = run_engine(e, pd, i, 1, &msg);
            if (rc == VTOK_EABORTED || g_stop)
                return 1;
            if (rc)
                write_error(o, pd->items[i].key, msg);
            else if (emit_rows(e, pd, i, 1, o))
                return 1;
        }
    }
    for (int64_t i = 0; i < pd->n; i++) {
        slot_clear(&pd->items[i]);
        if (pd->imgs)
            vtok_image_free(&pd->imgs[i]);
    }
    pd->n = 0;
    return 0;
}

/* Move a decoded slot into the batch (flushing first when its pixel size
 * differs from the batch's). 0 or 1. */
static int add_pending(engine *e, pending *pd, slot *s, shard_out *o)
{
    if (!e->rc && pd->n && (pd->items[0].h != s->h || pd->items[0].w != s->w) && flush(e, pd, o))
        return 1;
    if (!e->rc) {
        size_t per = (size_t)(3 * s->h * s->w), need = (size_t)(pd->n + 1) * per;
        if (need > pd->px_cap) {
            size_t cap = (size_t)pd->cap * per;
            float *x = realloc(pd->px, (cap > need ? cap : need) * sizeof(float));
            if (!x)
                return die("%s", "out of memory");
            pd->px = x;
            pd->px_cap = cap > need ? cap : need;
        }
        memcpy(pd->px + (size_t)pd->n * per, s->px, per * sizeof(float));
        free(s->px);
        s->px = NULL;
    } else {
        pd->imgs[pd->n] = s->img;
        memset(&s->img, 0, sizeof s->img);
    }
    pd->items[pd->n++] = *s;
    memset(s, 0, sizeof *s);
    return 0;
}

/* ----------------------------------------------------------- progress -- */

typedef struct {
    int     mode;          /* 0 none, 1 bar, 2 json */
    double  t_start, t_last;
    int64_t shards_total, shards_done, images_total;
    double  every;
} progress;

static void progress_report(progress *pg, const char *event, const char *shard,
                            const pipeline *p, const shard_out *o, double shard_t0, int force)
{
    double t = now_s();
    if (!pg->mode || (!force && t - pg->t_last < (pg->mode == 1 ? 0.2 : pg->every)))
        return;
    pg->t_last = t;
    int64_t done = o ? o->count + o->failed : 0;
    /* images so far: finished shards (a "shard_done" report comes after its
     * shard was added, with p NULL) plus the shard in progress */
    int64_t images = pg->images_total + (p ? done : 0);
    double el = t - pg->t_start, rate = el > 0 ? (double)images / el : 0;
    double frac_shard = p && p->total ? (double)p->pos / (double)p->total
                        : p && p->shard->kind == BS_FILES && p->shard->count
                            ? (double)p->pos / (double)p->shard->count
                            : 0;
    double frac = pg->shards_total
                      ? ((double)pg->shards_done + (frac_shard > 1 ? 1 : frac_shard)) /
                            (double)pg->shards_total
                      : 1;
    double eta = frac > 0 ? el / frac - el : -1;
    if (pg->mode == 1) {
        char bar[31];
        int k = (int)(frac * 30);
        for (int i = 0; i < 30; i++)
            bar[i] = i < k ? '#' : '-';
        bar[30] = '\0';
        char etas[32] = "?";
        if (eta >= 0)
            snprintf(etas, sizeof etas, "%d:%02d:%02d", (int)(eta / 3600),
                     (int)(eta / 60) % 60, (int)eta % 60);
        fprintf(stderr, "\r[%s] shard %lld/%lld %-12.12s %lld img %.1f img/s ETA %s   ", bar,
                (long long)(pg->shards_done + (p != NULL)), (long long)pg->shards_total,
                shard ? shard : "", (long long)images, rate, etas);
        if (!strcmp(event, "finished"))
            fputc('\n', stderr);
        fflush(stderr);
        return;
    }
    printf("{\"event\": \"%s\", \"shard\": ", event);
    if (shard)
        bo_json_str(stdout, shard, strlen(shard));
    else
        fputs("null", stdout);
    double sel = t - shard_t0;
    printf(", \"done\": %lld, \"failed\": %lld, \"images_per_s\": %.2f, \"shard_images_per_s\": "
           "%.2f, \"shards_done\": %lld, \"shards_total\": %lld, \"elapsed_s\": %.2f, \"eta_s\": "
           "%.1f}\n",
           (long long)done, (long long)(o ? o->failed : 0), rate,
           o && sel > 0 ? (double)done / sel : 0.0, (long long)pg->shards_done,
           (long long)pg->shards_total, el, eta);
    fflush(stdout);
}

/* ------------------------------------------------------------- shards -- */

static int write_stats(shard_out *o, const batch_args *a, const engine *e, const bs_shard *sh,
                       const pipeline *p, double secs, int rank, int size)
{
    FILE *f = open_excl(o->path[F_STATS]);
    if (!f)
        return -1;
    fputs("{\n  \"shard\": ", f);
    bo_json_str(f, sh->name, strlen(sh->name));
    fputs(",\n  \"input\": ", f);
    bo_json_str(f, sh->source, strlen(sh->source));
    fprintf(f, ",\n  \"count\": %lld,\n  \"failed\": %lld,\n  \"seconds\": %.3f,\n"
            "  \"images_per_s\": %.2f,\n  \"model\": ",
            (long long)o->count, (long long)o->failed, secs,
            secs > 0 ? (double)(o->count + o->failed) / secs : 0.0);
    bo_json_str(f, a->model, strlen(a->model));
    fputs(",\n  \"recipe\": ", f);
    if (a->recipe)
        bo_json_str(f, e->ri.name, strlen(e->ri.name));
    else
        fputs("null", f);
    fprintf(f, ",\n  \"dtype\": \"%s\",\n  \"output\": \"%s\",\n  \"npy_dtype\": \"%s\",\n"
            "  \"shape\": [%lld", a->dtype ? a->dtype : "f32", out_names[e->out],
            e->out == OUT_IDS ? "int64" : a->fp16 ? "float16" : "float32",
            (long long)o->npy.rows);
    for (int i = 0; i < o->npy.row_dims; i++)
        fprintf(f, ", %lld", (long long)o->npy.row_shape[i]);
    fputs("],\n  \"input_error\": ", f);
    if (p->input_err[0])
        bo_json_str(f, p->input_err, strlen(p->input_err));
    else
        fputs("null", f);
    fprintf(f, ",\n  \"rank\": %d,\n  \"num_shards\": %d,\n  \"schedule\": \"%s\",\n"
            "  \"host\": ", rank, size, g_schedule);
    bo_json_str(f, o->host, strlen(o->host));
    fprintf(f, ",\n  \"vtok\": \"%s\",\n  \"kernels\": \"%s\"\n}\n", vtok_version(),
            vtok_kernel_name());
    return bo_close_sync(f);
}

/* Close, rename into place, then the done marker. 0 or 1. */
static int commit(shard_out *o, const batch_args *a, const engine *e, const bs_shard *sh,
                  const pipeline *p, double secs, int rank, int size)
{
    if (o->npy.row_dims == 0)
        bo_npy_set_row(&o->npy, e->empty_dims, e->empty_shape);
    int bad = bo_npy_close(&o->npy) != 0;
    if (o->ragged) { /* [samples]: one count per key */
        bad |= bo_npy_close(&o->lens) != 0;
        o->ragged = 0; /* closed: out_abandon must not touch it */
    }
    bad |= bo_close_sync(o->keys) != 0;
    bad |= bo_close_sync(o->errors) != 0;
    if (o->captions)
        bad |= bo_close_sync(o->captions) != 0;
    if (o->routing)
        bad |= bo_close_sync(o->routing) != 0;
    o->keys = o->errors = o->captions = o->routing = NULL;
    if (bad || write_stats(o, a, e, sh, p, secs, rank, size)) {
        int err = errno;
        out_abandon(o);
        return die("%s: cannot write outputs in %s: %s", sh->name, a->out, strerror(err));
    }
    for (int i = 0; i < F_DONE; i++)
        if (o->path[i][0] && rename(o->path[i], o->final[i]) != 0) {
            int err = errno;
            out_abandon(o);
            return die("cannot rename %s: %s", o->path[i], strerror(err));
        }
    bo_sync_dir(a->out); /* the outputs are durable before the marker says so */
    FILE *f = open_excl(o->path[F_DONE]);
    if (f) {
        fprintf(f, "{\"count\": %lld, \"failed\": %lld}\n", (long long)o->count,
                (long long)o->failed);
        if (bo_close_sync(f) == 0 && rename(o->path[F_DONE], o->final[F_DONE]) == 0) {
            bo_sync_dir(a->out);
            return 0;
        }
    }
    int err = errno;
    unlink(o->path[F_DONE]);
    return die("cannot write %s: %s", o->final[F_DONE], strerror(err));
}

/* Run one shard. 0 done, 1 failed (reported; the run goes on), 2 stop. */
static int run_shard(const batch_args *a, engine *e, const bs_shard *sh, int rank, int size,
                     progress *pg)
{
    shard_out o;
    if (out_open(&o, a, e, sh->name))
        return 1;
    double t0 = now_s();
    /* on the heap: on a signal, a reader blocked in a pipe read is left
     * behind (the process exits) and must never see freed memory */
    pipeline *pp = calloc(1, sizeof *pp);
    if (!pp) {
        out_abandon(&o);
        return die("%s", "out of memory");
    }
    pp->shard = sh;
    pp->a = a;
    pp->e = e;
    pp->W = 4 * (int64_t)a->batch + 2 * (int64_t)a->workers;
    if (pp->W < 16)
        pp->W = 16;
    pending pd = {0};
    pd.cap = a->batch;
    pp->slots = calloc((size_t)pp->W, sizeof *pp->slots);
    pd.items = calloc((size_t)a->batch, sizeof *pd.items);
    pd.imgs = e->rc ? calloc((size_t)a->batch, sizeof *pd.imgs) : NULL;
    if (!pp->slots || !pd.items || (e->rc && !pd.imgs)) {
        free(pp->slots);
        free(pd.items);
        free(pd.imgs);
        free(pp);
        out_abandon(&o);
        return die("%s", "out of memory");
    }
    pthread_mutex_init(&pp->mu, NULL);
    pthread_cond_init(&pp->cv_space, NULL);
    pthread_cond_init(&pp->cv_work, NULL);
    pthread_cond_init(&pp->cv_done, NULL);
    pthread_t reader, *workers = calloc((size_t)a->workers, sizeof *workers);
    int n_workers = 0, started = workers && !pthread_create(&reader, NULL, reader_main, pp);
    for (int i = 0; started && i < a->workers; i++)
        if (!pthread_create(&workers[i], NULL, worker_main, pp))
            n_workers++;
    int rc = started && n_workers ? 0 : die("%s", "cannot start threads");
    /* consume in sample order */
    while (!rc && started) {
        pthread_mutex_lock(&pp->mu);
        slot *s = &pp->slots[pp->n_consumed % pp->W];
        while (!g_stop && !(pp->n_consumed < pp->n_read && s->ready) &&
               !(pp->eof && pp->n_consumed == pp->n_read))
            pthread_cond_wait(&pp->cv_done, &pp->mu);
        int end = g_stop || (pp->eof && pp->n_consumed == pp->n_read);
        pthread_mutex_unlock(&pp->mu);
        if (end)
            break;
        if (s->error) {
            write_error(&o, s->key, s->error);
            slot_clear(s);
        } else if (add_pending(e, &pd, s, &o) || (pd.n == a->batch && flush(e, &pd, &o)))
            rc = 1;
        pthread_mutex_lock(&pp->mu);
        pp->n_consumed++;
        pthread_cond_broadcast(&pp->cv_space);
        pthread_mutex_unlock(&pp->mu);
        progress_report(pg, "progress", sh->name, pp, &o, t0, 0);
    }
    if (!rc && started && !g_stop && flush(e, &pd, &o))
        rc = 1;
    pthread_mutex_lock(&pp->mu);
    pp->stop = 1;
    pthread_cond_broadcast(&pp->cv_space);
    pthread_cond_broadcast(&pp->cv_work);
    pthread_mutex_unlock(&pp->mu);
    for (int i = 0; i < n_workers; i++) /* each finishes at most the image it holds */
        pthread_join(workers[i], NULL);
    if (g_stop && sh->kind == BS_PIPE) {
        /* the reader may sit in a blocking read of the pipe: not waited for,
         * its pipeline (and the plan) stay allocated until the process exits */
        g_reader_left = 1;
        out_abandon(&o);
        return 2;
    }
    if (started) /* a file reader sees the stop at its next member */
        pthread_join(reader, NULL);
    free(workers);
    for (int64_t i = 0; i < pp->W; i++)
        slot_clear(&pp->slots[i]);
    free(pp->slots);
    for (int64_t i = 0; i < pd.n; i++) {
        slot_clear(&pd.items[i]);
        if (pd.imgs)
            vtok_image_free(&pd.imgs[i]);
    }
    free(pd.items);
    free(pd.imgs);
    free(pd.px);
    pthread_mutex_destroy(&pp->mu);
    pthread_cond_destroy(&pp->cv_space);
    pthread_cond_destroy(&pp->cv_work);
    pthread_cond_destroy(&pp->cv_done);
    if (g_stop) {
        free(pp);
        out_abandon(&o);
        return 2;
    }
    if (!rc && pp->fatal[0])
        rc = die("%s: %s", sh->name, pp->fatal);
    if (rc) {
        free(pp);
        out_abandon(&o);
        progress_report(pg, "shard_failed", sh->name, NULL, NULL, t0, 1);
        return 1;
    }
    if (pp->input_err[0]) /* a malformed archive: recorded, the samples before it kept */
        write_error(&o, NULL, pp->input_err);
    double secs = now_s() - t0;
    int bad = commit(&o, a, e, sh, pp, secs, rank, size);
    free(pp);
    if (bad)
        return 1;
    pg->images_total += o.count + o.failed;
    pg->shards_done++;
    progress_report(pg, "shard_done", sh->name, NULL, &o, t0, 1);
    return 0;
}

typedef struct {
    const char   *out;
    const bs_plan *plan;
} done_ctx;

/* Whether shard i has its done marker (rank 0's dispatcher asks). */
static int shard_done(int64_t i, void *user)
{
    const done_ctx *d = user;
    char done[4600];
    snprintf(done, sizeof done, "%s/%s.done", d->out, d->plan->shards[i].name);
    return file_exists(done);
}

/* Dynamic hand-out (batch_mpi.c) when built with MPI and started by mpirun
 * with several ranks, unless --schedule static or --shard-index says
 * otherwise. 1 dynamic, 0 static, -1 refused (message printed). */
static int want_dynamic(const batch_args *a)
{
    int asked = a->schedule && !strcmp(a->schedule, "dynamic");
    if (a->schedule && !asked)
        return 0;
    if (asked && !bm_available())
        return die("%s", "--schedule dynamic: this vtok was built without MPI (install "
                         "libopenmpi-dev and rebuild), so ranks split shards statically"), -1;
    if (asked && a->shard_index >= 0)
        return die("%s", "--schedule dynamic hands out shards itself: drop --shard-index"), -1;
    if (!bm_available() || !bm_launched() || a->shard_index >= 0) {
        if (asked)
            fprintf(stderr, "vtok batch: --schedule dynamic: not started by mpirun with "
                    "several ranks; static split\n");
        return 0;
    }
    return 1;
}

static int batch_main(batch_args *a, int dyn, int rank, int size, const char *how)
{
    char err[1024];
    bs_plan plan;
    if (bs_plan_build(a->inputs, a->n_inputs, a->image_key, a->shard_size, &plan, err, sizeof err))
        return die("%s", err);
    if (mkdir(a->out, 0777) != 0 && errno != EEXIST) {
        int e = errno;
        bs_plan_free(&plan);
        return die("cannot create %s: %s", a->out, strerror(e));
    }
    progress pg = {0};
    pg.mode = a->progress ? (!strcmp(a->progress, "bar") ? 1 : !strcmp(a->progress, "json") ? 2 : 0)
                          : isatty(fileno(stderr)) ? 1 : 2;
    pg.every = a->progress_every;
    pg.t_start = now_s();
    /* static: every shard i with i % size == rank; dynamic: whichever rank 0
     * hands out, from all of them. Finished ones are skipped. */
    int step = dyn ? 1 : size, first = dyn ? 0 : rank;
    done_ctx dc = {a->out, &plan};
    int64_t mine = 0, skipped = 0;
    for (int64_t i = first; i < plan.n; i += step)
        if (shard_done(i, &dc))
            skipped++;
        else
            mine++;
    if (!dyn)
        remove_stale_temps(a->out, &plan, rank, size);
    else if (rank == 0) /* before any shard is handed out, so none of this run's */
        remove_stale_temps(a->out, &plan, 0, 1);
    if (dyn)
        fprintf(stderr, "vtok batch: rank %d of %d (%s): %lld shards, %lld already done, "
                "handed out by rank 0 as ranks ask\n", rank, size, how, (long long)plan.n,
                (long long)skipped);
    else
        fprintf(stderr, "vtok batch: rank %d of %d (%s): %lld of %lld shards, %lld already "
                "done\n", rank, size, how, (long long)(mine + skipped), (long long)plan.n,
                (long long)skipped);
    if (dyn && rank == 0 && bm_serve(plan.n, shard_done, &dc, err, sizeof err)) {
        bs_plan_free(&plan);
        return die("%s", err);
    }
    engine e = {0};
    int rc = 0;
    if (mine && engine_load(&e, a)) {
        engine_free(&e);
        if (dyn)
            bm_next(plan.n, 1, err, sizeof err); /* this rank takes no shard */
        bs_plan_free(&plan);
        return 1;
    }
    if (e.route_each) /* each image its own routing pass: one image per run */
        a->batch = 1;
    /* dynamic: this rank's share is not known in advance; the progress ETA
     * assumes an even share and grows as it takes more */
    pg.shards_total = dyn ? (mine + size - 1) / size : mine;
    int64_t failed = 0, next = first - step;
    while (!g_stop) {
        if (dyn) {
            next = bm_next(plan.n, 0, err, sizeof err);
            if (next == -2) {
                failed++;
                die("%s", err);
            }
            if (next < 0)
                break;
            if (pg.shards_done >= pg.shards_total)
                pg.shards_total = pg.shards_done + 1;
        } else if ((next += step) >= plan.n)
            break;
        else if (shard_done(next, &dc))
            continue;
        if (dyn && pg.mode == 2) {
            printf("{\"event\": \"shard_start\", \"shard\": ");
            bo_json_str(stdout, plan.shards[next].name, strlen(plan.shards[next].name));
            printf(", \"rank\": %d}\n", rank);
            fflush(stdout);
        }
        int r = run_shard(a, &e, &plan.shards[next], rank, size, &pg);
        failed += r == 1;
        if (r == 2)
            break;
    }
    if (dyn && g_stop)
        bm_next(plan.n, 1, err, sizeof err); /* leave: no more shards for this rank */
    double el = now_s() - pg.t_start;
    if (pg.mode == 1 && mine)
        progress_report(&pg, "finished", NULL, NULL, NULL, pg.t_start, 1);
    if (g_stop) {
        rc = 128 + (int)g_stop;
        fprintf(stderr, "vtok batch: stopped by signal %d; rerun to resume\n", (int)g_stop);
    } else {
        if (dyn) /* what the static split reports as its own */
            skipped = rank == 0 ? skipped : 0;
        if (pg.mode == 2)
            printf("{\"event\": \"finished\", \"rank\": %d, \"num_shards\": %d, \"schedule\": "
                   "\"%s\", \"shards_done\": %lld, \"shards_failed\": %lld, \"shards_skipped\": "
                   "%lld, \"images\": %lld, \"seconds\": %.2f, \"images_per_s\": %.2f}\n",
                   rank, size, g_schedule, (long long)pg.shards_done, (long long)failed,
                   (long long)skipped, (long long)pg.images_total, el,
                   el > 0 ? (double)pg.images_total / el : 0.0);
        fprintf(stderr, "vtok batch: %lld shard(s) done, %lld failed, %lld skipped; %lld images "
                "in %.1f s (%.1f images/s)\n", (long long)pg.shards_done, (long long)failed,
                (long long)skipped, (long long)pg.images_total, el,
                el > 0 ? (double)pg.images_total / el : 0.0);
        rc = failed ? 1 : 0;
    }
    engine_free(&e);
    if (!g_reader_left) /* else a reader left in a pipe read may still look at its shard */
        bs_plan_free(&plan);
    return rc;
}

int cli_batch(int argc, char **argv)
{
    batch_args a = {0};
    if (parse_args(argc, argv, &a))
        return 1;
    int dyn = want_dynamic(&a);
    if (dyn < 0)
        return 1;
    int rank = 0, size = 1;
    const char *how = "";
    char err[1024];
    if (dyn) {
        if (bm_init(&rank, &size, err, sizeof err)) {
            bm_finish(1);
            return die("%s", err);
        }
        how = "Open MPI, dynamic";
        g_schedule = "dynamic";
    } else if (detect_rank(&a, &rank, &size, &how))
        return 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int rc = batch_main(&a, dyn, rank, size, how);
    if (dyn)
        bm_finish(g_stop != 0); /* a stopped rank 0 answers "none" from then on */
    return rc;
}
