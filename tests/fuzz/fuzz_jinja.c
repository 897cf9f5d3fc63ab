/*
 * fuzz_jinja.c - libFuzzer target for the chat-template engine (src/text/jinja*.c).
 *
 * The input is a template source, optionally followed by a NUL byte and a
 * JSON context; without one (or when it does not parse as an object) a fixed
 * chat context is used. The template is parsed and, if it parses, rendered;
 * every failure must come back as a code with a message. On success the
 * output length is checked and its last byte touched. The engine's own caps
 * (VT_JINJA_MAX_*) keep each input well under libFuzzer's -timeout.
 * Sources: src/text/jinja.c, jinja_parse.c, jinja_value.c, jinja_templates.c;
 * link -lcjson -lm.
 */
#include "text/jinja.h"

#include <cjson/cJSON.h>

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char CONTEXT[] =
    "{\"bos_token\":\"<s>\",\"eos_token\":\"</s>\",\"add_generation_prompt\":true,"
    "\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
    "{\"role\":\"user\",\"content\":\"<image>\\nWhat is this? \\u00e9 {{ x }}\"},"
    "{\"role\":\"assistant\",\"content\":\"<think>hm</think> A cat.\","
    "\"tool_calls\":[{\"id\":\"abc123456\",\"type\":\"function\","
    "\"function\":{\"name\":\"f\",\"arguments\":{\"a\":1,\"b\":[true,null,2.5]}}}]},"
    "{\"role\":\"tool\",\"content\":\"ok\"}],"
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{}}}]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *src = (const char *)data;
    size_t len = size;
    const uint8_t *nul = memchr(data, 0, size);
    cJSON *ctx = NULL;
    if (nul) {
        len = (size_t)(nul - data);
        ctx = cJSON_ParseWithLength((const char *)nul + 1, size - len - 1);
        if (ctx && !cJSON_IsObject(ctx)) {
            cJSON_Delete(ctx);
            ctx = NULL;
        }
    }
    if (!ctx)
        ctx = cJSON_Parse(CONTEXT);
    char err[256];
    vt_jinja *t = NULL;
    if (vt_jinja_parse(&t, src, len, err, sizeof(err)) == 0) {
        char *out = NULL;
        size_t on = 0;
        if (vt_jinja_render(t, ctx, &out, &on, err, sizeof(err)) == 0) {
            if (on > VT_JINJA_MAX_OUTPUT)
                abort();
            volatile char sink = out[on]; /* the terminating NUL */
            (void)sink;
            free(out);
        } else if (out || !err[0]) {
            abort(); /* a failure leaves no output and says why */
        }
    } else if (t || !err[0]) {
        abort();
    }
    vt_jinja_free(t);
    cJSON_Delete(ctx);
    return 0;
}
