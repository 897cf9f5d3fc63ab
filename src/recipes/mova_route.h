/*
 * mova_route.h - MoVA's coarse routing as its code does it (TempleX98/MoVA):
 * the routing prompt (mova/constants.py ROUTING_PROMPT) and the parser from
 * the LLM's routing answer to the expert mask (mova/eval/model_vqa_loader.py
 * get_routing_weights).
 *
 * Experts in mask order (mova_encoder.py, constants.py; the code's letters,
 * not the paper's Table 2): A DINOv2, B Vary, C Co-DETR, D Pix2Struct,
 * E DePlot, F BiomedCLIP, G SAM.
 */
#ifndef VT_MOVA_ROUTE_H
#define VT_MOVA_ROUTE_H

#include <stddef.h>

#define VT_MOVA_EXPERTS 7

/* The routing prompt; the question follows it directly ("...\n\nQuestion:\n" + q). */
const char *vt_mova_routing_prompt(void);

/* The expert mask of a routing answer (the decoded, stripped text): only
 * the part before the third ',' is read, and expert k is on when its letter
 * ('A' + k) occurs anywhere in it, case-sensitive - a plain substring test,
 * so "Answer: C" also turns A on and "none" turns nothing on, exactly as
 * the original. Returns how many experts are on. */
int vt_mova_parse_routing(const char *text, size_t len, int mask[VT_MOVA_EXPERTS]);

#endif /* VT_MOVA_ROUTE_H */
