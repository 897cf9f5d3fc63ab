/*
 * jinja_render.c - block runner for the Jinja subset (src/text/jinja.c).
 *
 *   jinja_render render IN.json OUT.json
 *       IN = {"templates": {name: source}, "cases": [{"id", "template", "context"}]}
 *       OUT = {id: {"ok": true, "out": text} | {"ok": false, "code": n, "error": msg}}
 *       tests/jinja/check.py compares OUT with @huggingface/jinja and Python jinja2.
 *   jinja_render builtin NAME CONTEXT.json
 *       renders the built-in template NAME; the text goes to stdout.
 *   jinja_render hostile
 *       hostile and malformed templates must fail with the expected code and a
 *       message, quickly and without crashing (also run under ASan).
 */
#include "text/jinja.h"
#include "vtok.h"

#include <cjson/cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (n + 4096 > cap) {
            cap *= 2;
            char *nb = realloc(b, cap);
            if (!nb) {
                free(b);
                fclose(f);
                return NULL;
            }
            b = nb;
        }
        size_t r = fread(b + n, 1, cap - n - 1, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    b[n] = 0;
    *len = n;
    return b;
}

static int cmd_render(const char *in, const char *outp)
{
    size_t len;
    char *src = read_file(in, &len);
    if (!src) {
        fprintf(stderr, "cannot read %s\n", in);
        return 2;
    }
    cJSON *root = cJSON_ParseWithLength(src, len);
    free(src);
    if (!root) {
        fprintf(stderr, "%s: bad JSON\n", in);
        return 2;
    }
    const cJSON *tpls = cJSON_GetObjectItemCaseSensitive(root, "templates");
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "cases");
    cJSON *res = cJSON_CreateObject();
    const cJSON *c;
    cJSON_ArrayForEach(c, cases)
    {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "id"));
        const char *tn = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "template"));
        const char *ts = tn ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tpls, tn)) : NULL;
        const cJSON *ctx = cJSON_GetObjectItemCaseSensitive(c, "context");
        cJSON *r = cJSON_CreateObject();
        char err[512];
        vt_jinja *t = NULL;
        int rc = ts ? vt_jinja_parse(&t, ts, strlen(ts), err, sizeof(err)) : VTOK_EINVAL;
        if (!ts)
            snprintf(err, sizeof(err), "no template '%s'", tn ? tn : "?");
        char *out = NULL;
        size_t on = 0;
        if (rc == 0)
            rc = vt_jinja_render(t, ctx, &out, &on, err, sizeof(err));
        if (rc == 0 && strlen(out) != on) {
            /* a NUL inside the text cannot travel through cJSON strings */
            rc = VTOK_EINVAL;
            snprintf(err, sizeof(err), "output contains a NUL byte");
        }
        if (rc == 0) {
            cJSON_AddBoolToObject(r, "ok", 1);
            cJSON_AddStringToObject(r, "out", out);
        } else {
            cJSON_AddBoolToObject(r, "ok", 0);
            cJSON_AddNumberToObject(r, "code", rc);
            cJSON_AddStringToObject(r, "error", err);
        }
        free(out);
        vt_jinja_free(t);
        cJSON_AddItemToObject(res, id ? id : "?", r);
    }
    char *txt = cJSON_PrintUnformatted(res);
    FILE *f = fopen(outp, "wb");
    int ok = f && txt && fputs(txt, f) >= 0;
    if (f)
        ok &= fclose(f) == 0;
    free(txt);
    cJSON_Delete(res);
    cJSON_Delete(root);
    if (!ok) {
        fprintf(stderr, "cannot write %s\n", outp);
        return 2;
    }
    return 0;
}

static int cmd_builtin(const char *name, const char *ctxp)
{
    const char *src = vt_jinja_builtin(name);
    if (!src) {
        fprintf(stderr, "no built-in template '%s'\n", name);
        return 2;
    }
    size_t len;
    char *js = read_file(ctxp, &len);
    cJSON *ctx = js ? cJSON_ParseWithLength(js, len) : NULL;
    free(js);
    if (!ctx) {
        fprintf(stderr, "cannot read context %s\n", ctxp);
        return 2;
    }
    char err[512];
    vt_jinja *t = NULL;
    char *out = NULL;
    size_t on = 0;
    int rc = vt_jinja_parse(&t, src, strlen(src), err, sizeof(err));
    if (rc == 0)
        rc = vt_jinja_render(t, ctx, &out, &on, err, sizeof(err));
    if (rc == 0)
        fwrite(out, 1, on, stdout);
    else
        fprintf(stderr, "%s\n", err);
    free(out);
    vt_jinja_free(t);
    cJSON_Delete(ctx);
    return rc == 0 ? 0 : 1;
}

/* ---------------------------------------------------------------- hostile */

#define DEEP_MACRO(CALL)                                                                              \
    "{% macro f(n) %}{% if n > 0 %}{% if 1 %}{% if 1 %}{% if 1 %}{% if 1 %}{% if 1 %}{% if 1 %}{% if 1 %}" \
    "{% for i in [1] %}{% for j in [1] %}{{ " CALL " ~ '' }}{% endfor %}{% endfor %}"                    \
    "{% endif %}{% endif %}{% endif %}{% endif %}{% endif %}{% endif %}{% endif %}{% endif %}"           \
    "{% endmacro %}"

typedef struct {
    const char *what;
    const char *src; /* NULL: built by the test */
    int parse_code;  /* expected from parse (0 = parses) */
    int render_code; /* expected from render when parse succeeds */
} hcase;

static char *repeat_str(const char *a, int n, const char *mid, const char *b, int m)
{
    size_t la = strlen(a), lb = strlen(b), lm = strlen(mid);
    char *s = malloc(la * (size_t)n + lm + lb * (size_t)m + 1);
    size_t k = 0;
    for (int i = 0; i < n; i++, k += la)
        memcpy(s + k, a, la);
    memcpy(s + k, mid, lm);
    k += lm;
    for (int i = 0; i < m; i++, k += lb)
        memcpy(s + k, b, lb);
    s[k] = 0;
    return s;
}

static int run_hostile(const hcase *h, const char *src, const cJSON *ctx)
{
    char err[512] = "";
    vt_jinja *t = NULL;
    char *out = NULL;
    size_t on = 0;
    clock_t t0 = clock();
    int rc = vt_jinja_parse(&t, src, strlen(src), err, sizeof(err));
    int stage = 0;
    if (rc == 0) {
        stage = 1;
        rc = vt_jinja_render(t, ctx, &out, &on, err, sizeof(err));
    }
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    int want = stage == 0 ? h->parse_code : h->render_code;
    int ok = rc == want && (rc == 0 || err[0] != 0) && (stage == 1 || h->parse_code != 0) && secs < 20.0;
    if (rc != 0 && out)
        ok = 0; /* no output on failure */
    printf("%s %-44s %s rc=%d (want %d) %.2fs: %s\n", ok ? "ok  " : "FAIL", h->what,
           stage ? "render" : "parse ", rc, want, secs, err);
    free(out);
    vt_jinja_free(t);
    return ok;
}

static int cmd_hostile(void)
{
    static const hcase cases[] = {
        {"unterminated if", "{% if x %}abc", VTOK_EFORMAT, 0},
        {"unterminated for", "{% for m in messages %}{{ m }}", VTOK_EFORMAT, 0},
        {"unterminated tag", "{{ 1 + ", VTOK_EFORMAT, 0},
        {"unterminated block tag", "{% if x", VTOK_EFORMAT, 0},
        {"unterminated comment", "{# abc", VTOK_EFORMAT, 0},
        {"unterminated string", "{{ 'abc }}", VTOK_EFORMAT, 0},
        {"stray endif", "{% endif %}", VTOK_EFORMAT, 0},
        {"stray else", "a{% else %}b", VTOK_EFORMAT, 0},
        {"bad syntax", "{{ 1 +* 2 }}", VTOK_EFORMAT, 0},
        {"bad character", "{{ a ! b }}", VTOK_EFORMAT, 0},
        {"missing paren", "{{ f(1, 2 }}", VTOK_EFORMAT, 0},
        {"empty expression", "{{ }}", VTOK_EFORMAT, 0},
        {"unknown statement", "{% include 'x.html' %}", VTOK_EUNSUPPORTED, 0},
        {"extends refused", "{% extends 'base' %}", VTOK_EUNSUPPORTED, 0},
        {"import refused", "{% import 'm' as m %}", VTOK_EUNSUPPORTED, 0},
        {"range 10**9", "{% for i in range(10**9) %}x{% endfor %}", 0, VTOK_ELIMIT},
        {"nested loops 1e4 x 1e4", "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
         0, VTOK_ELIMIT},
        {"string bomb", "{{ 'a' * 1000000000 }}", 0, VTOK_ELIMIT},
        {"doubling string", "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
                            "{% endfor %}{{ ns.s|length }}",
         0, VTOK_ELIMIT},
        {"output bomb", "{% for i in range(1000000) %}{{ 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' }}{% endfor %}", 0,
         VTOK_ELIMIT},
        {"macro recursion", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", 0, VTOK_ELIMIT},
        {"macro fan-out", "{% macro f(n) %}{% if n < 40 %}{{ f(n + 1) }}{{ f(n + 1) }}{% endif %}{% endmacro %}{{ f(0) }}",
         0, VTOK_ELIMIT},
        {"integer overflow", "{{ 9223372036854775807 + 1 }}", 0, VTOK_EINVAL},
        {"pow overflow", "{{ 2 ** 100 }}", 0, VTOK_EINVAL},
        {"division by zero", "{{ 1 // 0 }}", 0, VTOK_EINVAL},
        {"raise_exception", "{{ raise_exception('no way') }}", 0, VTOK_EINVAL},
        {"undefined attribute chain", "{{ nope.a.b }}", 0, VTOK_EINVAL},
        {"undefined arithmetic", "{{ nope + 1 }}", 0, VTOK_EINVAL},
        {"unknown filter", "{{ 'a' | frobnicate }}", 0, VTOK_EUNSUPPORTED},
        {"unknown test", "{{ 1 is frobnicate }}", 0, VTOK_EUNSUPPORTED},
        {"call a string", "{{ 'a'() }}", 0, VTOK_EINVAL},
        {"assign attr of non-namespace", "{% set x = {} %}{% set x.a = 1 %}", 0, VTOK_EINVAL},
        {"iterate none", "{% for x in none %}{% endfor %}", 0, VTOK_EINVAL},
        {"slice step zero", "{{ [1, 2][::0] }}", 0, VTOK_EINVAL},
        /* 32 macro levels of ~20 nested evaluations: the render depth cap
         * (not the C stack) stops it; run under ASan with a 1 MiB stack too */
        {"deep macro x nesting", DEEP_MACRO("[[[[[[[[[[f(n - 1)]]]]]]]]]]|length") "{{ f(31) }}", 0, VTOK_ELIMIT},
        {"ok: macro x nesting below the caps", DEEP_MACRO("f(n - 1)") "{{ f(20) }}", 0, 0},
        {"ok: normal template", "{% for m in messages %}{{ m.role }}{% endfor %}", 0, 0},
        {"ok: undefined prints empty", "[{{ nope }}]{% if nope %}x{% endif %}", 0, 0},
    };
    cJSON *ctx = cJSON_Parse("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    int fails = 0, n = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++, n++)
        fails += !run_hostile(&cases[i], cases[i].src, ctx);

    /* built sources: deep nesting of expressions, ifs, brackets; a huge source */
    struct {
        const char *what, *a, *mid, *b;
        int n;
        int pc, rcode;
    } built[] = {
        {"5000 nested parens", "{{ ", "1", "", 0, VTOK_ELIMIT, 0},
        {"5000 nested ifs", "{% if true %}", "x", "{% endif %}", 5000, VTOK_ELIMIT, 0},
        {"5000 nested lists", "{{ ", "1", " }}", 5000, VTOK_ELIMIT, 0},
        {"5000 nots", "{{ ", "true", " }}", 5000, VTOK_ELIMIT, 0},
        {"5000 unary minus", "{{ ", "1", " }}", 5000, VTOK_ELIMIT, 0},
        {"100 nested ifs (fine)", "{% if true %}", "x", "{% endif %}", 100, 0, 0},
    };
    for (size_t i = 0; i < sizeof(built) / sizeof(built[0]); i++, n++) {
        char *s;
        int k = built[i].n ? built[i].n : 5000;
        if (i == 0) {
            char *inner = repeat_str("(", k, "1", ")", k);
            s = repeat_str("{{ ", 1, inner, " }}", 1);
            free(inner);
        } else if (i == 2) {
            char *inner = repeat_str("[", k, "1", "]", k);
            s = repeat_str("{{ ", 1, inner, " }}", 1);
            free(inner);
        } else if (i == 3) {
            s = repeat_str("not ", k, "true", "", 0);
            char *w = repeat_str("{{ ", 1, s, " }}", 1);
            free(s);
            s = w;
        } else if (i == 4) {
            s = repeat_str("-", k, "1", "", 0);
            char *w = repeat_str("{{ ", 1, s, " }}", 1);
            free(s);
            s = w;
        } else {
            s = repeat_str(built[i].a, k, built[i].mid, built[i].b, k);
        }
        hcase h = {built[i].what, s, built[i].pc, built[i].rcode};
        fails += !run_hostile(&h, s, ctx);
        free(s);
    }
    {
        /* over the source limit */
        size_t big = VT_JINJA_MAX_SOURCE + 10;
        char *s = malloc(big + 1);
        memset(s, 'a', big);
        s[big] = 0;
        hcase h = {"source over the limit", s, VTOK_ELIMIT, 0};
        fails += !run_hostile(&h, s, ctx);
        free(s);
        n++;
    }
    {
        /* 100k tokens: parse stays linear */
        char *s = repeat_str("{{ a }}", 100000, "", "", 0);
        hcase h = {"100k tags", s, 0, 0};
        fails += !run_hostile(&h, s, ctx);
        free(s);
        n++;
    }
    {
        /* NUL bytes and invalid UTF-8 in the source are just text */
        static const char bad[] = "a\xff\xfe{{ 'b\xc3' }}c";
        hcase h = {"invalid UTF-8 in source", bad, 0, 0};
        fails += !run_hostile(&h, bad, ctx);
        n++;
    }
    {
        /* a context that is not an object, and NULL arguments */
        vt_jinja *t = NULL;
        char err[256];
        char *out = NULL;
        int ok = vt_jinja_parse(&t, "x", 1, err, sizeof(err)) == 0;
        cJSON *arr = cJSON_Parse("[1]");
        ok &= vt_jinja_render(t, arr, &out, NULL, err, sizeof(err)) == VTOK_EINVAL && !out;
        ok &= vt_jinja_render(NULL, NULL, &out, NULL, err, sizeof(err)) == VTOK_EINVAL;
        ok &= vt_jinja_parse(NULL, "x", 1, err, sizeof(err)) == VTOK_EINVAL;
        vt_jinja_free(NULL);
        cJSON_Delete(arr);
        vt_jinja_free(t);
        printf("%s %-44s\n", ok ? "ok  " : "FAIL", "bad arguments");
        fails += !ok;
        n++;
    }
    cJSON_Delete(ctx);
    printf("hostile: %d/%d passed\n", n - fails, n);
    return fails ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "render"))
        return cmd_render(argv[2], argv[3]);
    if (argc == 4 && !strcmp(argv[1], "builtin"))
        return cmd_builtin(argv[2], argv[3]);
    if (argc == 2 && !strcmp(argv[1], "hostile"))
        return cmd_hostile();
    if (argc == 2 && !strcmp(argv[1], "list")) {
        for (int i = 0; vt_jinja_builtin_name(i); i++)
            printf("%s\n", vt_jinja_builtin_name(i));
        return 0;
    }
    fprintf(stderr, "usage: jinja_render render IN.json OUT.json | builtin NAME CTX.json | hostile | list\n");
    return 2;
}
