/*
 * mova_run.c - MoVA's pieces for tests/blocks/mova_parity.py: the routing
 * prompt and parser (src/recipes/mova_route.h), Pix2Struct's patch grid
 * (src/image/pix2struct.h).
 *
 *   mova_run --prompt           the routing prompt, as raw bytes on stdout
 *   mova_run < answers.txt      per answer (one per line, "\n" and "\\" escaped
 *                               as in C), the mask as 7 digits on a line
 *   mova_run --grid MAX P < sizes.txt
 *                               per "h w" line, "rows cols" of the patch grid for
 *                               max_patches MAX and P x P patches
 */
#include "image/pix2struct.h"
#include "recipes/mova_route.h"

#include <stdlib.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--prompt")) {
        fputs(vt_mova_routing_prompt(), stdout);
        return 0;
    }
    if (argc > 3 && !strcmp(argv[1], "--grid")) {
        const long long mp = atoll(argv[2]), p = atoll(argv[3]);
        long long h, w;
        while (scanf("%lld %lld", &h, &w) == 2) {
            int64_t r, c;
            vt_pix2struct_grid(h, w, mp, p, p, &r, &c);
            printf("%lld %lld\n", (long long)r, (long long)c);
        }
        return 0;
    }
    char line[8192], text[8192];
    while (fgets(line, sizeof line, stdin)) {
        size_t n = 0;
        for (size_t i = 0; line[i] && line[i] != '\n' && n < sizeof text; i++) {
            if (line[i] == '\\' && line[i + 1] == 'n') {
                text[n++] = '\n';
                i++;
            } else if (line[i] == '\\' && line[i + 1] == '\\') {
                text[n++] = '\\';
                i++;
            } else {
                text[n++] = line[i];
            }
        }
        int mask[VT_MOVA_EXPERTS];
        vt_mova_parse_routing(text, n, mask);
        for (int k = 0; k < VT_MOVA_EXPERTS; k++)
            putchar('0' + mask[k]);
        putchar('\n');
    }
    return 0;
}
