/* mova_route.c - MoVA's routing prompt and answer parser (mova_route.h). */
#include "mova_route.h"

#include <string.h>

/* constants.py: the base prompt, then "\n" + letter + ". " + description per
 * expert, then "\n\nQuestion:\n". */
static const char routing_prompt[] =
    "You are a helpful assistant router. Based on the visual content, questions, and model "
    "pool the user provides, you need to consider the expertise of these models to select the "
    "most 3 suitable models to help you answer the questions. Answer with the model's letter "
    "from the given choices directly. If no models are selected, just answer 'none'.\n"
    "Model pool:"
    "\nA. This model can effectively extract the accurate spatial and semantic information from "
    "natural images."
    "\nB. This model can handle images with text accurately and efficiently but fails to process "
    "natural images."
    "\nC. This model is a state-of-the-art object detector that can identify objects in images."
    "\nD. This model shows remarkable skill in text recognition, attaining top-tier text analysis "
    "outcomes across diverse areas"
    "\nE. This model is a specialized model designed to achieve state-of-the-art plot and chart "
    "understanding performance."
    "\nF. This model is a foundation model designed for biomedical vision-language processing."
    "\nG. This model is a leading image segmentation framework and achieves strong zero-shot "
    "segmentation performance."
    "\n\nQuestion:\n";

const char *vt_mova_routing_prompt(void)
{
    return routing_prompt;
}

int vt_mova_parse_routing(const char *text, size_t len, int mask[VT_MOVA_EXPERTS])
{
    /* ','.join(response.split(',')[:3]): everything before the third comma */
    size_t end = 0;
    for (int commas = 0; end < len; end++)
        if (text[end] == ',' && ++commas == 3)
            break;
    int on = 0;
    for (int k = 0; k < VT_MOVA_EXPERTS; k++) {
        mask[k] = memchr(text, 'A' + k, end) != NULL;
        on += mask[k];
    }
    return on;
}
