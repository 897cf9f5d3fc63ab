/*
 * route.c - a routing recipe's LLM pass (vtok_recipe_route in vtok.h), one
 * code path for `vtok chat` / `vtok run --llm`, `vtok serve` and the Python
 * bindings.
 *
 * MoVA (mova/eval/model_vqa_loader.py): the coarse tokens of the images
 * (the recipe's "routing" stage: the adapter without experts, 2 x 2 pooled)
 * go into the chat prompt of ROUTING_PROMPT + question, the LLM answers
 * greedily with max_new_tokens=16, outputs.strip() goes to
 * get_routing_weights. The answer pass then runs the recipe again with those
 * weights (vtok_run_params.cond) on the same images (same_images: the base
 * encoder is not run twice).
 */
#include "recipe_internal.h"

#include "../models/llm_ctx.h"

#include <stdlib.h>
#include <string.h>

static int is_space(char ch)
{
    return ch && strchr(" \t\n\r\f\v", ch) != NULL; /* Python's str.strip() on ASCII */
}

void vtok_routing_free(vtok_routing *r)
{
    if (!r)
        return;
    vt_free(r->answer);
    vt_free(r->prompt_ids);
    memset(r, 0, sizeof *r);
}

int vtok_recipe_route(vtok_recipe_ctx *c, vtok_llm_ctx *lc, const vtok_image *images, int64_t n,
                      const vtok_run_params *rp, const char *question, const char *format,
                      float *weights, int64_t n_weights, vtok_routing *out, vtok_status *st)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!c || !lc || !images || n < 1 || !question || !weights)
        return vt_fail(st, VTOK_EINVAL, "vtok_recipe_route: bad argument");
    const vtok_recipe *r = vt_recipe_ctx_recipe(c);
    const int64_t n_exp = vtok_recipe_n_experts(r);
    vtok_recipe_info ri;
    vtok_recipe_get_info(r, &ri);
    if (n_exp < 1)
        return vt_fail(st, VTOK_EINVAL, "vtok_recipe_route: recipe %s does not route", ri.name);
    if (n_weights != n_exp)
        return vt_fail(st, VTOK_EINVAL, "vtok_recipe_route: %lld weights for %lld experts",
                       (long long)n_weights, (long long)n_exp);
    if (n > 4096)
        return vt_fail(st, VTOK_ELIMIT, "vtok_recipe_route: %lld images", (long long)n);
    /* the coarse pass: no routing; the adapter's gate reads the question */
    const double t0 = vt_now_ms();
    vtok_run_params p = rp ? *rp : vtok_run_default_params();
    p.prompt = question;
    p.cond = NULL;
    p.n_cond = 0;
    p.same_images = 0;
    if (vtok_recipe_run_images(c, images, n, &p))
        return vt_fail(st, VTOK_EINVAL, "%s", vtok_recipe_ctx_errmsg(c));
    vtok_view v = {0};
    const char *name = NULL;
    for (int i = 0; !vtok_recipe_get_stage(c, i, &name, &v); i++)
        if (!strcmp(name, "routing"))
            break;
    if (!name || strcmp(name, "routing") || v.n_dims != 3 || v.ne[0] != n)
        return vt_fail(st, VTOK_EINVAL, "vtok_recipe_route: recipe %s has no routing stage",
                       ri.name);
    const double t1 = vt_now_ms();
    int64_t *T = malloc((size_t)n * sizeof *T);
    const char *pre = vtok_recipe_routing_prompt(r);
    char *q = malloc(strlen(pre) + strlen(question) + 1);
    vtok_llm_batch b = {0};
    char *ans = NULL;
    int32_t gen[16];
    int64_t n_gen = 0;
    int rc = VTOK_ENOMEM;
    if (!T || !q) {
        vt_fail(st, rc, "out of memory");
        goto done;
    }
    for (int64_t k = 0; k < n; k++)
        T[k] = v.ne[1];
    strcpy(q, pre);
    strcat(q, question);
    /* the routing prompt is a chat turn even under "raw" (the question alone
     * is not a prompt there): the folder's template then */
    if ((rc = vtok_chat_prompt(lc->m, &ri, format && !strcmp(format, "raw") ? NULL : format, q,
                               n, T, NULL, &b, NULL, st)))
        goto done;
    b.embeds = v.data;
    vtok_gen_params gp = vtok_gen_default_params();
    gp.max_tokens = 16; /* model_vqa_loader.py: max_new_tokens=16 for the routing answer */
    if ((rc = vtok_llm_eval_reuse(lc, &b, 0, NULL)) ||
        (rc = vtok_llm_generate(lc, &gp, gen, 16, &n_gen))) {
        vt_fail(st, rc, "%s", vtok_llm_errmsg(lc));
        goto done;
    }
    const int64_t len = vtok_detokenize(lc->m, gen, n_gen, 1, NULL, 0, st);
    if (len < 0 || !(ans = malloc((size_t)len + 1)) ||
        vtok_detokenize(lc->m, gen, n_gen, 1, ans, (size_t)len + 1, st) != len) {
        rc = len < 0 ? (int)len : VTOK_ENOMEM;
        if (len >= 0)
            vt_fail(st, rc, "out of memory");
        goto done;
    }
    /* outputs.strip() before get_routing_weights */
    size_t a = 0, e = (size_t)len;
    while (a < e && is_space(ans[a]))
        a++;
    while (e > a && is_space(ans[e - 1]))
        e--;
    memmove(ans, ans + a, e - a);
    ans[e - a] = '\0';
    vtok_recipe_parse_routing(r, ans, weights, n_weights);
    if (out) {
        /* what lc holds now, for a caller that keeps the shared prefix */
        if (!(out->prompt_ids = malloc((size_t)b.n * sizeof *out->prompt_ids))) {
            rc = vt_fail(st, VTOK_ENOMEM, "out of memory");
            goto done;
        }
        for (int64_t k = 0; k < b.n; k++)
            out->prompt_ids[k] = b.ids ? b.ids[k] : -1;
        for (int64_t k = 0; k < b.n_embeds; k++)
            out->prompt_ids[b.embed_pos[k]] = -1;
        out->n_prompt = b.n;
        memcpy(out->ids, gen, (size_t)n_gen * sizeof *gen);
        out->n_ids = n_gen;
        out->answer = ans;
        ans = NULL;
        out->recipe_ms = t1 - t0;
        out->llm_ms = vt_now_ms() - t1;
    }
    rc = 0;
done:
    if (rc && out)
        vtok_routing_free(out);
    vtok_llm_batch_free(&b);
    free(ans);
    free(q);
    free(T);
    return rc;
}
